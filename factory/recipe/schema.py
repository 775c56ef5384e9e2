"""The recipe schema: every section of a study, validated strictly, and the configs it builds.
The `source` and `teacher` sections live in `source_spec` and `teacher_spec`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from factory.recipe import limits
from factory.recipe.base import (
    DROP_REASONS,
    OVERLONG,
    DropReason,
    Format,
    Named,
    RecipeError,
    Seed,
    Share,
    Strict,
    TaskType,
    valid,
)
from factory.recipe.cot_spec import Cot
from factory.recipe.names import (
    KeyedError,
    name_problem,
    repo_id_problem,
    student_name,
    teacher_name,
    unique,
)
from factory.recipe.plans import THINK, plan_configs
from factory.recipe.source_spec import (
    AlpacaSource,
    Columns,
    FilesSource,
    GymSource,
    HubSource,
    Source,
    SourceBase,
)
from factory.recipe.teacher_spec import (
    PROGRAM_FORMATS,
    PROGRAM_TASKS,
    REQUEST_KEYS,
    THINK_TAGS,
    Endpoint,
    OpenAITeacher,
    Price,
    ProgramTeacher,
    ReplayTeacher,
    Sampling,
    Teacher,
    TransformersTeacher,
)
from factory.recipe.where import locate

__all__ = [  # the names other modules import from here
    "DROP_REASONS",
    "OVERLONG",
    "PROGRAM_FORMATS",
    "PROGRAM_TASKS",
    "REQUEST_KEYS",
    "THINK_TAGS",
    "AlpacaSource",
    "Columns",
    "DropReason",
    "FilesSource",
    "Format",
    "GymSource",
    "HubSource",
    "OpenAITeacher",
    "Price",
    "ProgramTeacher",
    "RecipeError",
    "ReplayTeacher",
    "Sampling",
    "Source",
    "SourceBase",
    "TaskType",
    "Teacher",
    "TransformersTeacher",
]


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
    seed: Seed = 0

    _repo_id = field_validator("repo_id")(lambda repo_id: valid(repo_id, repo_id_problem))

    @field_validator("test_size")
    @classmethod
    def _fraction_or_count(cls, size: float | int | None) -> float | int | None:
        if isinstance(size, float) and size >= 1:
            raise ValueError(f"a fraction of train must be below 1, got {size}")
        if isinstance(size, int) and size > limits.MAX_PROBLEMS:
            raise ValueError(f"at most {limits.MAX_PROBLEMS:,} problems, got {size:,}")
        return size


class Student(Named):
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
    seeds: list[Seed] = Field(
        [0],
        min_length=1,
        max_length=limits.MAX_SEEDS,
        description="`run` uses the first; `sweep` all",
    )

    _unique = field_validator("configs", "seeds")(lambda values: values and unique(values))


DEFAULT_MAX_NEW_TOKENS = 256  # the answer bound where nothing says what a student writes


class EvalEndpoint(Endpoint):
    """A server that answers for the students (`eval.endpoint`): vLLM with the base model and
    the adapters as LoRA modules, say. Each student's prompts are rendered here, with the chat
    template it was trained with, and sent under its served name (factory/served.py)."""

    concurrency: int = Field(32, ge=1, le=limits.MAX_CONCURRENCY)
    models: dict[str, str] = Field(
        {},
        description="served model names, by the names cot-factory gives the students "
        "(`{student}-{config}-seed-{seed}`; the base model by its Hub id or path)",
    )


class EvalSpec(Strict):
    max_new_tokens: int | None = Field(  # left out of dumps when unset, like dtype
        None,
        ge=1,
        le=limits.MAX_TOKENS,
        description="the answer bound; unset: each student's longest training completion in its "
        "own tokens, with a margin, capped (factory.evaluate.answer_bound)",
        exclude_if=lambda bound: bound is None,
    )
    batch_size: int = Field(64, ge=1, le=limits.MAX_BATCH)
    limit: int | None = Field(None, ge=1, le=limits.MAX_PROBLEMS)
    dtype: Literal["auto", "float32", "bfloat16"] = Field(  # left out of dumps (and so of the
        "auto",  # recipe hash) at its default: recipes that do not set it keep their identity
        description="the dtype students are evaluated in; auto: see factory/precision.py",
        exclude_if=lambda dtype: dtype == "auto",
    )
    endpoint: EvalEndpoint | None = Field(  # where students answer, not what they are: left out
        None,  # of dumps and of the recipe hash, so it never changes a run folder
        description="answer through this OpenAI-compatible server instead of in-process",
        exclude=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _no_split(cls, data: Any) -> Any:
        if isinstance(data, dict) and "split" in data:
            raise ValueError(
                "there is no eval.split: students are evaluated on the source's test split "
                "(`source.test`, or `dataset.test_size` to carve one out of train)"
            )
        return data


class SpaceSpec(Strict):
    repo_id: str | None = Field(None, description="default `{dataset namespace}/{recipe}-demo`")
    title: str | None = None
    student: str | None = Field(None, description="whose adapters to show; default the first")
    configs: list[str] | None = Field(None, description="which configs; default all trained")
    hardware: str = "cpu-basic"

    _repo_id = field_validator("repo_id")(lambda repo_id: valid(repo_id, repo_id_problem))
    _unique = field_validator("configs")(lambda values: values and unique(values))


class Recipe(Strict):
    name: str
    description: str = ""
    target: Literal["local", "hf"] = Field("local", description="where `publish` and `run` publish")
    source: Source
    teacher: list[Teacher] = Field(
        [], max_length=limits.MAX_TEACHERS, description="one teacher, or a list to compare"
    )
    cot: Cot = Cot()
    dataset: DatasetSpec
    students: list[Student] = Field([], max_length=limits.MAX_STUDENTS)
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    space: SpaceSpec = SpaceSpec()
    mixtures: dict[str, list[str] | dict[str, Share]] = Field(
        {},
        max_length=limits.MAX_MIXTURES,
        description="extra configs, each the union of built configs (a list), or of a share of "
        "each one's rows (a mapping config -> share in (0, 1])",
    )
    # Set by load_recipe, not by the YAML.
    path: Path | None = Field(None, exclude=True)
    hash: str = Field("", exclude=True)
    lines: dict[tuple, int] = Field({}, exclude=True, repr=False)  # key path -> line

    _name = field_validator("name")(lambda name: valid(name, name_problem))

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
    def _mixtures_of_built_configs(self) -> Recipe:
        built = [plan.name for plan in plan_configs(self) if plan.teacher != "mixture"]
        for name, members in self.mixtures.items():
            if problem := name_problem(name):
                raise KeyedError(("mixtures", name), problem)
            if name in built:
                raise KeyedError(("mixtures", name), f"{name!r} is already a config of the recipe")
            if len(members) < 2:
                raise KeyedError(("mixtures", name), "a mixture needs at least two configs")
            for member in members:
                if member not in built:
                    known = ", ".join(built)
                    hint = (
                        "; set `reasoning: true` on its teacher" if member.endswith(THINK) else ""
                    )
                    raise KeyedError(
                        ("mixtures", name),
                        f"{member!r} is not built by this recipe ({known}){hint}",
                    )
        return self

    @model_validator(mode="after")
    def _names_unique(self) -> Recipe:
        for kind, section, names in (
            ("teacher", "teacher", [teacher_name(t) for t in self.teacher]),
            ("student", "students", [student_name(s) for s in self.students]),
        ):
            for i, name in enumerate(names):
                if name in names[:i]:
                    message = f"{kind} names must be unique, got {names}"
                    raise KeyedError((section, i), message)
        return self

    @model_validator(mode="after")
    def _programs_fit(self) -> Recipe:
        """A program teacher needs a reasoning-gym task it has a program for, in its formats."""
        for teacher in self.teacher:
            if isinstance(teacher, ProgramTeacher) and (misfit := _program_misfit(self)):
                keys, problem = misfit
                raise KeyedError(keys, f"the program teacher {teacher.name!r} {problem}")
        return self

    @model_validator(mode="after")
    def _repo_ids(self) -> Recipe:
        """Every repo `publish` creates is a valid repo id (so none names a folder outside)."""
        configs = [plan.name for plan in plan_configs(self)]
        for i, student in enumerate(self.students):
            for config in configs:
                if problem := repo_id_problem(self.adapter_repo(student, config)):
                    key = "repo_prefix" if student.repo_prefix else "name"
                    raise KeyedError(("students", i, key), f"its adapter repo {problem}")
        if not self.space.repo_id and (problem := repo_id_problem(self.space_repo())):
            raise KeyedError(("name",), f"the Space repo {problem}; set space.repo_id")
        return self

    def where(self, keys: tuple) -> str:
        """`file:line` of the deepest written key along `keys`, for error messages."""
        return locate(self.path, self.lines, keys) if self.path else "recipe"

    def space_repo(self) -> str:
        """The repo id the recipe's demo Space is published under."""
        return self.space.repo_id or f"{self.dataset.repo_id.split('/')[0]}/{self.name}-demo"

    def adapter_repo(self, student: Student, config: str) -> str:
        """The repo id a student distilled on `config` is published under."""
        namespace = self.dataset.repo_id.split("/")[0]
        prefix = student.repo_prefix or f"{namespace}/{student_name(student)}-{self.name}"
        return f"{prefix}-{config}"

    @property
    def tag(self) -> str:
        return f"recipe-{self.hash}"


def _program_misfit(recipe: Recipe) -> tuple[tuple, str] | None:
    """(key path, why) where the recipe asks a program teacher for what it cannot write."""
    source, tasks = recipe.source, ", ".join(PROGRAM_TASKS)
    if not isinstance(source, GymSource):
        return ("source", "kind"), f"needs a reasoning-gym source (kind: gym; tasks: {tasks})"
    if source.dataset not in PROGRAM_TASKS:
        why = f"has no program for {source.dataset!r}; tasks with one: {tasks}"
        return ("source", "dataset"), why
    for i, format in enumerate(recipe.cot.formats):
        if format not in PROGRAM_FORMATS:
            formats = ", ".join(PROGRAM_FORMATS)
            why = f"writes the formats {formats}, not {format!r}; remove it from cot.formats"
            return ("cot", "formats", i), why
    return None
