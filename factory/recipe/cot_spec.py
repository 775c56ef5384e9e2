"""The recipe's `cot` section: which levels, formats and samples, what is dropped, and what the
training questions are checked against."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from factory.recipe import limits
from factory.recipe.base import DROP_REASONS, DropReason, Format, Strict, valid
from factory.recipe.names import KeyedError, name_problem, unique


class EvalSet(Strict):
    """An evaluation set the training questions are checked against: local rows or a Hub
    dataset split, with the column that holds the question."""

    name: str
    files: str | None = Field(None, description="a .jsonl, .json, .csv or .parquet file")
    hub: str | None = Field(None, description="a Hub dataset id")
    subset: str | None = None
    split: str = "test"
    column: str = "question"

    _name = field_validator("name")(lambda name: valid(name, name_problem))

    @model_validator(mode="after")
    def _one_place(self) -> EvalSet:
        if (self.files is None) == (self.hub is None):
            raise ValueError("give exactly one of `files` and `hub`")
        return self


class Decontamination(Strict):
    """Training questions that match an evaluation question, by normalised text or a shared
    word n-gram: counted in the card (`report`) or dropped from the dataset (`drop`). The
    recipe's own test split is always checked; `against` names more evaluation sets."""

    action: Literal["report", "drop"] = "report"
    ngram: int = Field(13, ge=4, le=64)
    against: list[EvalSet] = Field([], max_length=16)

    @model_validator(mode="before")
    @classmethod
    def _action_alone(cls, data: Any) -> Any:
        return {"action": data} if isinstance(data, str) else data

    @field_validator("against")
    @classmethod
    def _names(cls, against: list[EvalSet]) -> list[EvalSet]:
        names = [eval_set.name for eval_set in against]
        if "test" in names:
            raise ValueError("`test` is the recipe's own test split: name the set otherwise")
        unique(names)
        return against


class Cot(Strict):
    levels: list[Annotated[int, Field(ge=1, le=6)]] = [1, 3, 6]
    formats: list[Format] = ["cot"]
    answer_only: bool = True
    reference: bool = False
    samples: int = Field(
        1, ge=1, le=limits.MAX_SAMPLES, description="verified traces wanted per problem and config"
    )
    max_attempts: int | None = Field(
        None,
        ge=1,
        le=limits.MAX_ATTEMPTS,
        description="samples a teacher may be asked per problem and config to reach `samples` "
        "verified traces; default `samples` (no resampling)",
    )
    drop: list[DropReason] = list(DROP_REASONS)
    decontaminate: Decontamination = Decontamination()
    max_reasoning_tokens: int | None = Field(
        None,
        ge=1,
        le=limits.MAX_TOKENS,
        description="long (`-think`) rows whose thinking has more tokens (words and punctuation) "
        "are dropped as `overlong`",
        exclude_if=lambda value: value is None,
    )

    _unique = field_validator("levels", "formats", "drop")(unique)

    @model_validator(mode="after")
    def _attempts_cover_samples(self) -> Cot:
        if self.max_attempts is not None and self.max_attempts < self.samples:
            raise KeyedError(
                ("max_attempts",),
                f"must be at least cot.samples ({self.samples}): each trace takes an attempt",
            )
        return self
