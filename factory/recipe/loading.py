"""Reading a recipe file: YAML, `${VAR}` interpolation, validation, and the build's identity.

Every problem is a `RecipeError` naming the file, the line and the key path, e.g.
`recipes/x.yaml:12: cot.levels[0]: ...`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from factory.recipe.limits import MAX_STRING, MAX_TEXT
from factory.recipe.names import name_problem
from factory.recipe.reading import read_recipe_file
from factory.recipe.schema import AlpacaSource, FilesSource, Recipe, RecipeError, ReplayTeacher
from factory.recipe.where import dotted, key_lines, locate, validation_messages

DISCRIMINATED = {
    "kind": "hub, files, alpaca, gym",
    "backend": "openai, transformers, replay, program",
}
HUB_TOKENS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
SECRET_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET")
ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_recipe(path: str | Path, *, inputs: bool = True) -> Recipe:
    """Read, interpolate and validate a recipe file. `inputs=False` does not read the local files
    it names (a recipe pulled with a published student, whose data came along as a dataset): its
    hash then counts them by path."""
    path = Path(path)
    raw, node = read_recipe_file(path)
    lines = key_lines(node)
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}:1: (top level): a recipe is a YAML mapping of sections")
    data = Interpolation(path, lines, _secret_variables(raw, path, lines)).apply(raw)
    if "name" not in data and (problem := name_problem(path.stem)):
        raise RecipeError(f"{path}: name: {problem} (taken from the file name; set name)")
    data.setdefault("name", path.stem)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(validation_messages(err, data, path, lines, DISCRIMINATED)) from None
    recipe.path, recipe.lines = path, lines
    recipe.hash = recipe_hash(recipe, path, lines, inputs=inputs)
    return recipe


def recipe_hash(
    recipe: Recipe, path: Path | None = None, lines: dict | None = None, *, inputs: bool = True
) -> str:
    """The identity of a build: a canonical hash of the recipe's resolved values (after
    interpolation, so `${TEACHER_MODEL}` counts by its value), with every local file it reads
    counted by its content rather than its path. Formatting, comments and key order do not change
    it; it names the run folder and the `recipe-{hash}` tag. Secrets never enter it: a recipe
    names the variable that holds a key, not the key."""
    values = recipe.model_dump(mode="json")
    for keys, file in _input_files(recipe) if inputs else []:
        node = values
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = {"sha256": _file_digest(Path(file), path, lines or {}, keys)}
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _input_files(recipe: Recipe) -> list[tuple[tuple, str]]:
    """(key path in the dumped recipe, file) for every local file the build reads."""
    files = []
    if isinstance(recipe.source, FilesSource | AlpacaSource):
        for split in ("train", "test"):
            if getattr(recipe.source, split) is not None:
                files.append((("source", split), getattr(recipe.source, split)))
    for i, teacher in enumerate(recipe.teacher):
        if isinstance(teacher, ReplayTeacher):
            files += [(("teacher", i, "files", c), f) for c, f in teacher.files.items()]
    for i, eval_set in enumerate(recipe.cot.decontaminate.against):
        if eval_set.files:
            files.append((("cot", "decontaminate", "against", i, "files"), eval_set.files))
    return files


def _file_digest(file: Path, path: Path | None, lines: dict, keys: tuple) -> str:
    digest = hashlib.sha256()
    try:
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as err:
        if keys[0] == "teacher" and keys[:2] not in lines:  # a single teacher, not a list
            keys = ("teacher", *keys[2:])
        where = locate(path, lines, keys) if path else "recipe"
        raise RecipeError(f"{where}: {dotted(keys)}: cannot read {file}: {err.strerror}") from None
    return digest.hexdigest()


def _secret_variables(raw: dict, path: Path, lines: dict) -> dict[str, str]:
    """The variables a recipe may not interpolate, each with why: the Hub tokens and every
    teacher's `api_key_env` (resolved, as it may itself come from `${...}`)."""
    secrets = {name: "a Hugging Face token" for name in HUB_TOKENS}
    teachers = raw.get("teacher")
    keyed = [(("teacher",), teachers)] if isinstance(teachers, dict) else []
    if isinstance(teachers, list):
        keyed = [(("teacher", i), teacher) for i, teacher in enumerate(teachers)]
    for keys, teacher in keyed:
        keys = (*keys, "api_key_env")
        name = teacher.get("api_key_env", "OPENAI_API_KEY") if isinstance(teacher, dict) else None
        if isinstance(name, str):
            name = Interpolation(path, lines, secrets).apply(name, keys)
            secrets[name] = f"the API key named by {dotted(keys)}"
    return secrets


class Interpolation:
    """`${VAR}` and `${VAR:-default}` in string values, from the environment; never a secret
    (`secrets`, or a name ending in _API_KEY, _TOKEN or _SECRET), and within the text limits."""

    def __init__(self, path: Path, lines: dict, secrets: dict[str, str]):
        self.path, self.lines, self.secrets, self.text = path, lines, secrets, 0

    def apply(self, node: Any, keys: tuple = ()) -> Any:
        if isinstance(node, dict):
            return {k: self.apply(v, (*keys, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [self.apply(v, (*keys, i)) for i, v in enumerate(node)]
        if not isinstance(node, str):
            return node
        value = self._substitute(node, keys)
        self.text += len(value)
        if self.text > MAX_TEXT:
            self._fail(keys, f"the text grows past {MAX_TEXT:,} characters once ${{VAR}}s expand")
        return value

    def _substitute(self, text: str, keys: tuple) -> str:
        size = len(text)

        def value(match: re.Match) -> str:
            nonlocal size
            found = self._value(match, keys)
            size += len(found) - len(match.group())
            if size > MAX_STRING:
                message = f"longer than {MAX_STRING:,} characters once ${{VAR}}s expand"
                self._fail(keys, message)
            return found

        return ENV_VAR.sub(value, text)

    def _value(self, match: re.Match, keys: tuple) -> str:
        name, default = match.group(1), match.group(2)
        why = self.secrets.get(name)
        suffix = next((s for s in SECRET_SUFFIXES if name.upper().endswith(s)), None)
        if why is None and suffix:
            why = f"its name ends in {suffix}"
        if why:
            self._fail(keys, f"${{{name}}} holds a secret ({why}); a recipe may not interpolate it")
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        self._fail(keys, f"environment variable ${{{name}}} is not set and has no default")

    def _fail(self, keys: tuple, message: str) -> None:
        where = locate(self.path, self.lines, keys)
        raise RecipeError(f"{where}: {dotted(keys) or '(top level)'}: {message}")
