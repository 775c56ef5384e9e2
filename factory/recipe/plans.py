"""The dataset configs a recipe builds, one per teacher x format x level, plus the baselines."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from factory.recipe.names import teacher_name

CONFIG_NAME = re.compile(r"^(?:(cot|subq|rar|sym)-L([1-6])|answer-only|reference)$")


@dataclass(frozen=True)
class ConfigPlan:
    """One dataset config the recipe builds: who writes its rationales, in which shape."""

    name: str
    teacher: str  # a teacher's name; `gold`, `reference`, or `mixture` (the rows of `members`)
    format: str | None = None
    level: int | None = None
    members: tuple[tuple[str, float], ...] = ()  # a mixture's (config, share of its rows)

    @property
    def shape(self) -> str:
        return f"{self.format}-L{self.level}"


def plan_configs(recipe: Any) -> list[ConfigPlan]:
    """Every dataset config the recipe asks for, in card order: `{format}-L{level}` for each level
    x format of a generating teacher (or each file of a replay teacher), prefixed by the
    teacher's name when there are several, then `answer-only`, `reference` and the mixtures."""
    several = len(recipe.teacher) > 1
    plans = []
    for spec in recipe.teacher:
        name = teacher_name(spec)
        if spec.backend == "replay":
            shapes = [_parse_config(config) for config in spec.files]
        else:
            shapes = [(f, lvl) for f in recipe.cot.formats for lvl in recipe.cot.levels]
        for fmt, level in shapes:
            config = f"{name}-{fmt}-L{level}" if several else f"{fmt}-L{level}"
            plans.append(ConfigPlan(config, name, fmt, level))
    if recipe.cot.answer_only:
        plans.append(ConfigPlan("answer-only", "gold"))
    if recipe.cot.reference:
        plans.append(ConfigPlan("reference", "reference"))
    for name, members in getattr(recipe, "mixtures", {}).items():
        shares = members if isinstance(members, dict) else dict.fromkeys(members, 1.0)
        plans.append(ConfigPlan(name, "mixture", members=tuple(shares.items())))
    return plans


def _parse_config(config: str) -> tuple[str, int]:
    match = CONFIG_NAME.match(config)
    return match.group(1), int(match.group(2))
