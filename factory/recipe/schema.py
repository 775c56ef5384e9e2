"""The recipe schema: every section of a study, validated strictly, and the configs it builds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TaskType = Literal["math", "multiple_choice", "yes_no"]
Format = Literal["cot", "subq", "rar", "sym"]
DropReason = Literal["truncated", "unparseable", "wrong", "repetitive", "duplicate"]
DROP_REASONS: tuple[str, ...] = ("truncated", "unparseable", "wrong", "repetitive", "duplicate")
CONFIG_NAME = re.compile(r"^(?:(cot|subq|rar|sym)-L([1-6])|answer-only|reference)$")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class RecipeError(ValueError):
    """A recipe that cannot be used, with where and why."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- source -----------------------------------------------------------------------------------


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
    limit: int | None = Field(None, ge=1, description="keep the first N problems of each split")


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
    train: int = Field(ge=1)
    test: int | None = Field(None, ge=1)
    seed: int = 0


Source = Annotated[HubSource | FilesSource | AlpacaSource | GymSource, Field(discriminator="kind")]

# --- teachers ---------------------------------------------------------------------------------


class Sampling(Strict):
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, ge=1)
    seed: int | None = 0


class OpenAITeacher(Sampling):
    backend: Literal["openai"]
    name: str | None = None
    model: str
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str | None = "OPENAI_API_KEY"
    concurrency: int = Field(8, ge=1)
    max_retries: int = Field(6, ge=0)
    timeout: float = Field(120.0, gt=0)


class TransformersTeacher(Sampling):
    backend: Literal["transformers"]
    name: str | None = None
    model: str
    batch_size: int = Field(8, ge=1)


class ReplayTeacher(Strict):
    backend: Literal["replay"]
    name: str
    files: dict[str, str] = Field(description="config name -> alpaca JSON file of rationales")

    @field_validator("files")
    @classmethod
    def _config_names(cls, files: dict[str, str]) -> dict[str, str]:
        for config in files:
            if not CONFIG_NAME.match(config):
                raise ValueError(f"{config!r} is not a config name ({{format}}-L{{1-6}})")
        return files


Teacher = Annotated[
    OpenAITeacher | TransformersTeacher | ReplayTeacher, Field(discriminator="backend")
]

# --- cot, dataset and the later sections ------------------------------------------------------


class Cot(Strict):
    levels: list[Annotated[int, Field(ge=1, le=6)]] = [1, 3, 6]
    formats: list[Format] = ["cot"]
    answer_only: bool = True
    reference: bool = False
    samples: int = Field(1, ge=1)
    drop: list[DropReason] = list(DROP_REASONS)


class DatasetSpec(Strict):
    repo_id: str
    pretty_name: str | None = None
    license: str = "other"
    language: list[str] = ["en"]
    tags: list[str] = []
    source_datasets: list[str] = []
    private: bool = False
    test_size: float | int | None = Field(
        None, gt=0, description="carve a test split out of train when the source has none"
    )
    seed: int = 0

    @field_validator("repo_id")
    @classmethod
    def _repo_id(cls, repo_id: str) -> str:
        if not REPO_ID.match(repo_id):
            raise ValueError(f"{repo_id!r} is not a repo id of the form namespace/name")
        return repo_id


class Student(Strict):
    model: str = Field(description="a Hub id, a local path, or `smollm2-135m`")
    name: str | None = None
    repo_prefix: str | None = Field(
        None,
        description="adapter repos are `{repo_prefix}-{config}`; default "
        "`{dataset namespace}/{name}-{recipe name}`",
    )


class TrainSpec(Strict):
    configs: list[str] | None = Field(None, description="dataset configs to train on; default all")
    lora: dict[str, Any] | None = Field({}, description="peft.LoraConfig options; null: full FT")
    sft: dict[str, Any] = Field({}, description="trl.SFTConfig options")
    seeds: list[int] = Field([0], min_length=1, description="`run` uses the first; `sweep` all")


class EvalSpec(Strict):
    split: str = "test"
    max_new_tokens: int = Field(256, ge=1)
    batch_size: int = Field(16, ge=1)
    limit: int | None = Field(None, ge=1)


class SpaceSpec(Strict):
    repo_id: str | None = Field(None, description="default `{dataset namespace}/{recipe}-demo`")
    title: str | None = None
    student: str | None = Field(None, description="whose adapters to show; default the first")
    configs: list[str] | None = Field(None, description="which configs; default all trained")
    hardware: str = "cpu-basic"


class Recipe(Strict):
    name: str
    description: str = ""
    target: Literal["local", "hf"] = Field("local", description="where `publish` and `run` publish")
    source: Source
    teacher: list[Teacher] = Field([], description="one teacher, or a list to compare")
    cot: Cot = Cot()
    dataset: DatasetSpec
    students: list[Student] = []
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    space: SpaceSpec = SpaceSpec()
    # Set by load_recipe, not by the YAML.
    path: Path | None = Field(None, exclude=True)
    hash: str = Field("", exclude=True)

    @field_validator("teacher", mode="before")
    @classmethod
    def _one_or_many(cls, teacher: Any) -> Any:
        return [teacher] if isinstance(teacher, dict) else teacher

    @model_validator(mode="after")
    def _builds_something(self) -> Recipe:
        if not self.teacher and not (self.cot.answer_only or self.cot.reference):
            raise ValueError(
                "no teacher and neither cot.answer_only nor cot.reference: "
                "the recipe would build no config"
            )
        return self

    @model_validator(mode="after")
    def _names_unique(self) -> Recipe:
        for kind, names in (
            ("teacher", [teacher_name(t) for t in self.teacher]),
            ("student", [student_name(s) for s in self.students]),
        ):
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names must be unique, got {names}")
        return self

    def adapter_repo(self, student: Student, config: str) -> str:
        """The repo id a student distilled on `config` is published under."""
        namespace = self.dataset.repo_id.split("/")[0]
        prefix = student.repo_prefix or f"{namespace}/{student_name(student)}-{self.name}"
        return f"{prefix}-{config}"

    @property
    def tag(self) -> str:
        return f"recipe-{self.hash}"


def teacher_name(teacher: OpenAITeacher | TransformersTeacher | ReplayTeacher) -> str:
    """The teacher's short name: explicit, else the last path part of its model."""
    return teacher.name or _short_name(teacher.model)


def student_name(student: Student) -> str:
    """The student's short name: explicit, else the last path part of its model."""
    return student.name or _short_name(student.model)


def _short_name(model: str) -> str:
    return re.sub(r"[^\w.-]+", "-", model.rstrip("/").rsplit("/", 1)[-1]).lower()


# --- configs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigPlan:
    """One dataset config the recipe builds: who writes its rationales, in which shape."""

    name: str
    teacher: str  # a teacher's name, or `gold` (answer-only) or `reference` (the source's own)
    format: str | None = None
    level: int | None = None

    @property
    def shape(self) -> str:
        return f"{self.format}-L{self.level}"


def plan_configs(recipe: Recipe) -> list[ConfigPlan]:
    """Every dataset config the recipe asks for, in card order: `{format}-L{level}` for each level
    x format of a generating teacher (or each file of a replay teacher), prefixed by the
    teacher's name when there are several, then `answer-only` and `reference`."""
    several = len(recipe.teacher) > 1
    plans = []
    for spec in recipe.teacher:
        name = teacher_name(spec)
        if isinstance(spec, ReplayTeacher):
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
    return plans


def _parse_config(config: str) -> tuple[str, int]:
    match = CONFIG_NAME.match(config)
    return match.group(1), int(match.group(2))
