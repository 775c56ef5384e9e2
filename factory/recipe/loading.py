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

import yaml
from pydantic import ValidationError

from factory.recipe.schema import AlpacaSource, FilesSource, Recipe, RecipeError, ReplayTeacher
from factory.recipe.where import dotted, key_lines, locate, validation_messages

DISCRIMINATED = {"kind": "hub, files, alpaca, gym", "backend": "openai, transformers, replay"}
ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_recipe(path: str | Path) -> Recipe:
    """Read, interpolate and validate a recipe file."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    text = path.read_text()
    try:
        lines = key_lines(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise RecipeError(f"{where}: invalid YAML: {getattr(err, 'problem', err)}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping of sections")
    data = _interpolate(raw, (), path, lines)
    data.setdefault("name", path.stem)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(validation_messages(err, data, path, lines, DISCRIMINATED)) from None
    recipe.path = path
    recipe.hash = recipe_hash(recipe, path, lines)
    return recipe


def recipe_hash(recipe: Recipe, path: Path | None = None, lines: dict | None = None) -> str:
    """The identity of a build: a canonical hash of the recipe's resolved values (after
    interpolation, so `${TEACHER_MODEL}` counts by its value), with every local file it reads
    counted by its content rather than its path. Formatting, comments and key order do not change
    it; it names the run folder and the `recipe-{hash}` tag. Secrets never enter it: a recipe
    names the variable that holds a key, not the key."""
    values = recipe.model_dump(mode="json")
    for keys, file in _input_files(recipe):
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


def _interpolate(node: Any, keys: tuple, path: Path, lines: dict) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, (*keys, k), path, lines) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, (*keys, i), path, lines) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        where = locate(path, lines, keys)
        raise RecipeError(
            f"{where}: environment variable ${{{name}}} is not set and has no default"
        )

    return ENV_VAR.sub(substitute, node)
