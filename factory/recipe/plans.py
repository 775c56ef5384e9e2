"""The dataset configs a recipe builds, one per teacher x format x level, plus the baselines."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

from factory.recipe.names import teacher_name

THINK = "-think"  # the suffix of a long config: a reasoning teacher's thinking, then its answer
SHAPE_NAME = re.compile(r"^(cot|subq|rar|sym)-L([1-6])$")
CONFIG_NAME = re.compile(rf"^(?:(cot|subq|rar|sym)-L([1-6])(?:{THINK})?|answer-only|reference)$")


@dataclass(frozen=True)
class ConfigPlan:
    """One dataset config the recipe builds: who writes its rationales, in which shape."""

    name: str
    teacher: str  # a teacher's name; `gold`, `reference`, or `mixture` (the rows of `members`)
    format: str | None = None
    level: int | None = None
    members: tuple[tuple[str, float], ...] = ()  # a mixture's (config, share of its rows)
    thinking: bool = False  # a long config: the thinking and the answer of its short twin's rows

    @property
    def shape(self) -> str:
        return f"{self.format}-L{self.level}"


def thinking_plan(plan: ConfigPlan) -> ConfigPlan:
    """The long twin of a teacher's short config: `cot-L3` -> `cot-L3-think`."""
    return replace(plan, name=plan.name + THINK, thinking=True)


def is_reasoning(spec: Any, detected: Collection[str] = ()) -> bool:
    """Whether a teacher gets long configs: `reasoning: true`, or (left unset) its answers
    carried thinking (`detected` names those teachers)."""
    marked = getattr(spec, "reasoning", None)
    return teacher_name(spec) in detected if marked is None else marked


def plan_configs(recipe: Any, thinking: Collection[str] = ()) -> list[ConfigPlan]:
    """Every dataset config the recipe asks for, in card order: `{format}-L{level}` for each level
    x format of a generating teacher (or each file of a replay teacher), each followed by its
    `-think` twin for a reasoning teacher (see `is_reasoning`; `thinking` names the teachers
    found thinking), prefixed by the teacher's name when there are several, then `answer-only`,
    `reference` and the mixtures."""
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
            if is_reasoning(spec, thinking):
                plans.append(thinking_plan(plans[-1]))
    if recipe.cot.answer_only:
        plans.append(ConfigPlan("answer-only", "gold"))
    if recipe.cot.reference:
        plans.append(ConfigPlan("reference", "reference"))
    for name, members in getattr(recipe, "mixtures", {}).items():
        shares = members if isinstance(members, dict) else dict.fromkeys(members, 1.0)
        plans.append(ConfigPlan(name, "mixture", members=tuple(shares.items())))
    return plans


def _parse_config(config: str) -> tuple[str, int]:
    match = SHAPE_NAME.match(config)
    return match.group(1), int(match.group(2))
