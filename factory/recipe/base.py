"""The recipe's building blocks: its error, the strict model base, names and shared types."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from factory.recipe import limits
from factory.recipe.names import KeyedError, name_problem, teacher_name

TaskType = Literal["math", "multiple_choice", "yes_no"]
Format = Literal["cot", "subq", "rar", "sym"]
DropReason = Literal["truncated", "unparseable", "wrong", "repetitive", "duplicate"]
DROP_REASONS: tuple[str, ...] = ("truncated", "unparseable", "wrong", "repetitive", "duplicate")
OVERLONG = "overlong"  # a long chain over `cot.max_reasoning_tokens`: dropped whenever it is set
Seed = Annotated[int, Field(ge=0, lt=limits.SEED_END)]
Share = Annotated[float, Field(gt=0, le=1)]


class RecipeError(ValueError):
    """A recipe that cannot be used, with where and why."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Named(Strict):
    """A teacher or student: its short name names folders, configs and repos."""

    @model_validator(mode="after")
    def _safe_name(self) -> Named:
        if self.name is not None:
            problem, key = name_problem(self.name), "name"
        else:
            problem, key = name_problem(teacher_name(self)), "model"
            problem = problem and f"{problem} (the name taken from the model; set name)"
        if problem:
            raise KeyedError((key,), problem)
        return self


def valid(value: str | None, problem_of) -> str | None:
    if value is not None and (problem := problem_of(value)):
        raise ValueError(problem)
    return value
