"""The rules a recipe's names follow: safe folder names, Hub repo ids, unique list items, the
reasoning-gym datasets that exist, and the short names of teachers and students."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from typing import Any

NAME_RULE = (
    "use letters, digits, '-', '_' and '.', start and end with a letter or digit, "
    "no '/', '--' or '..', at most 96 characters"
)
GYM_OWN_OPTIONS = {"size": "source.train and source.test", "seed": "source.seed"}


class KeyedError(ValueError):
    """A validation error about a key below the one being validated: `keys` is its path from
    there (a list index, a key), so the message can point at the line that holds it."""

    def __init__(self, keys: tuple, message: str):
        super().__init__(message)
        self.keys = keys


def short(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters so a hostile value cannot flood a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def name_problem(name: str) -> str | None:
    """Why `name` cannot be one folder (and part of a repo id), or None: the Hub's rules for a
    repo name, which exclude `..`, `/` and everything else that could leave a folder."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return f"{short(name)} is not a safe name: {NAME_RULE}"
    return f"{short(name)} is not a safe name: {NAME_RULE}" if "/" in name else None


def repo_id_problem(repo_id: str) -> str | None:
    """Why `repo_id` is not a Hub repo id `namespace/name` (huggingface_hub's rules), or None."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if repo_id.count("/") != 1:
        return f"{short(repo_id)} is not a repo id of the form namespace/name"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        reason = str(err).removesuffix(f": '{repo_id}'.").rstrip(".")
        return f"{short(repo_id)} is not a valid repo id: {reason[:1].lower()}{reason[1:]}"
    return None


def unique(values: list) -> list:
    """`values`, after checking that none is listed twice."""
    seen = set()
    for i, value in enumerate(values):
        if value in seen:
            raise KeyedError((i,), f"{short(value)} is listed twice")
        seen.add(value)
    return values


@functools.cache
def gym_registry() -> dict[str, type]:
    """reasoning-gym's registered datasets, name -> config dataclass. Importing reasoning-gym
    registers them all and takes about 0.8 s (it imports sympy and matplotlib), so this runs
    only for a recipe with a gym source, once per process."""
    from reasoning_gym.factory import DATASETS

    return {name: config for name, (_, config) in DATASETS.items()}


def gym_dataset_problem(name: str) -> str | None:
    """Why `name` is not a reasoning-gym dataset, with the closest registered names."""
    names = sorted(gym_registry())
    if name in names:
        return None
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"did you mean {', '.join(map(repr, close))}?" if close else "none is close"
    return f"{short(name)} is not a reasoning-gym dataset ({hint})"


def gym_option_problem(dataset: str, option: str) -> str | None:
    """Why `option` cannot be passed to the reasoning-gym dataset's config, or None."""
    if option in GYM_OWN_OPTIONS:
        return f"set by {GYM_OWN_OPTIONS[option]}, not an option"
    fields = [f.name for f in dataclasses.fields(gym_registry()[dataset]) if f.init]
    if option in fields:
        return None
    known = ", ".join(f for f in fields if f not in GYM_OWN_OPTIONS)
    return f"not an option of {dataset} (options: {known})"


def teacher_name(teacher: Any) -> str:
    """The teacher's short name: explicit, else the last path part of its model."""
    return teacher.name or _short_name(teacher.model)


def student_name(student: Any) -> str:
    """The student's short name: explicit, else the last path part of its model."""
    return student.name or _short_name(student.model)


def _short_name(model: str) -> str:
    return re.sub(r"[^\w.-]+", "-", model.rstrip("/").rsplit("/", 1)[-1]).lower()
