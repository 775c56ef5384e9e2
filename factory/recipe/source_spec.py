"""The recipe's `source` section: where the problems come from, in four kinds."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from factory.recipe import limits
from factory.recipe.base import Seed, Strict, TaskType, valid
from factory.recipe.names import KeyedError, gym_dataset_problem, gym_option_problem


class Columns(Strict):
    """Which source columns hold each problem field."""

    id: str | None = None
    question: str = "question"
    answer: str = "answer"
    choices: str | None = None
    rationale: str | None = None


class SourceBase(Strict):
    task: TaskType = "math"
    columns: Columns = Columns()
    limit: int | None = Field(
        None, ge=1, le=limits.MAX_PROBLEMS, description="keep the first N problems of each split"
    )
    bad_rows: Literal["error", "skip"] = Field(
        "error", description="a row that cannot be a problem: stop on it, or skip it and count it"
    )


class HubSource(SourceBase):
    kind: Literal["hub"]
    dataset: str
    subset: str | None = None
    revision: str | None = None
    train: str = "train"
    test: str | None = None


class FilesSource(SourceBase):
    kind: Literal["files"]
    train: str
    test: str | None = None


class AlpacaSource(SourceBase):
    kind: Literal["alpaca"]
    train: str
    test: str | None = None


class GymSource(SourceBase):
    kind: Literal["gym"]
    dataset: str
    options: dict[str, Any] = {}
    train: int = Field(ge=1, le=limits.MAX_GENERATED)
    test: int | None = Field(None, ge=1, le=limits.MAX_GENERATED)
    seed: Seed = 0

    _registered = field_validator("dataset")(lambda name: valid(name, gym_dataset_problem))

    @model_validator(mode="after")
    def _options_exist(self) -> GymSource:
        for option in self.options:
            if problem := gym_option_problem(self.dataset, option):
                raise KeyedError(("options", option), problem)
        return self


Source = Annotated[HubSource | FilesSource | AlpacaSource | GymSource, Field(discriminator="kind")]
