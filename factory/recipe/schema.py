"""The recipe schema: every section of a study, validated strictly, and the configs it builds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from factory.recipe import limits
from factory.recipe.names import (
    KeyedError,
    gym_dataset_problem,
    gym_option_problem,
    name_problem,
    repo_id_problem,
    student_name,
    teacher_name,
    unique,
)
from factory.recipe.plans import SHAPE_NAME, THINK, plan_configs
from factory.recipe.where import locate

TaskType = Literal["math", "multiple_choice", "yes_no"]
Format = Literal["cot", "subq", "rar", "sym"]
DropReason = Literal["truncated", "unparseable", "wrong", "repetitive", "duplicate"]
DROP_REASONS: tuple[str, ...] = ("truncated", "unparseable", "wrong", "repetitive", "duplicate")
OVERLONG = "overlong"  # a long chain over `cot.max_reasoning_tokens`: dropped whenever it is set
THINK_TAGS = ("<think>", "</think>")
REQUEST_KEYS = (
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "reasoning_effort",
)
Seed = Annotated[int, Field(ge=0, lt=limits.SEED_END)]
# The reasoning-gym tasks and the formats factory/programs writes rationales for.
PROGRAM_TASKS: tuple[str, ...] = ("basic_arithmetic", "chain_sum", "leg_counting")
PROGRAM_FORMATS: tuple[str, ...] = ("cot", "subq", "sym")
Share = Annotated[float, Field(gt=0, le=1)]


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

    _registered = field_validator("dataset")(lambda name: _valid(name, gym_dataset_problem))

    @model_validator(mode="after")
    def _options_exist(self) -> GymSource:
        for option in self.options:
            if problem := gym_option_problem(self.dataset, option):
                raise KeyedError(("options", option), problem)
        return self


Source = Annotated[HubSource | FilesSource | AlpacaSource | GymSource, Field(discriminator="kind")]

# --- teachers ---------------------------------------------------------------------------------


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


class Sampling(Named):
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, ge=1, le=limits.MAX_TOKENS)
    seed: Seed | None = 0
    # Reasoning models. Left out of dumps (and so of the recipe hash) at their defaults.
    reasoning: bool | None = Field(
        None,
        description="a reasoning model: build a `-think` config beside each config; "
        "null: when its answers carry thinking; false: never",
        exclude_if=lambda value: value is None,
    )
    reasoning_tags: tuple[str, str] = Field(
        THINK_TAGS,
        description="the tag pair around thinking inline in the text",
        exclude_if=lambda tags: tuple(tags) == THINK_TAGS,
    )

    @field_validator("reasoning_tags")
    @classmethod
    def _two_tags(cls, tags: tuple[str, str]) -> tuple[str, str]:
        if not all(tag.strip() for tag in tags) or tags[0] == tags[1]:
            raise ValueError("two different, non-empty tags: [opening, closing]")
        return tags


class Price(Strict):
    """What an endpoint charges, in any currency, per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class OpenAITeacher(Sampling):
    backend: Literal["openai"]
    name: str | None = None
    model: str
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str | None = "OPENAI_API_KEY"
    concurrency: int = Field(8, ge=1, le=limits.MAX_CONCURRENCY)
    max_retries: int = Field(6, ge=0, le=limits.MAX_RETRIES)
    timeout: float = Field(120.0, gt=0, le=limits.MAX_TIMEOUT)
    price: Price | None = Field(None, description="per million prompt and completion tokens")
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = Field(
        None, description="sent as is", exclude_if=lambda value: value is None
    )
    extra_body: dict[str, Any] = Field(
        {},
        description="more request fields, e.g. chat_template_kwargs: {enable_thinking: true}",
        exclude_if=lambda body: not body,
    )

    @field_validator("extra_body")
    @classmethod
    def _no_request_keys(cls, body: dict[str, Any]) -> dict[str, Any]:
        for key in body:
            if key in REQUEST_KEYS:
                raise ValueError(f"{key!r} is a teacher key of its own: set teacher.{key}")
        return body


class TransformersTeacher(Sampling):
    backend: Literal["transformers"]
    name: str | None = None
    model: str
    batch_size: int = Field(8, ge=1, le=limits.MAX_BATCH)


class ReplayTeacher(Named):
    backend: Literal["replay"]
    name: str
    files: dict[str, str] = Field(description="config name -> alpaca JSON file of rationales")

    @field_validator("files")
    @classmethod
    def _config_names(cls, files: dict[str, str]) -> dict[str, str]:
        for config in files:
            if not SHAPE_NAME.match(config):
                raise ValueError(f"{config!r} is not a config name ({{format}}-L{{1-6}})")
        return files


class ProgramTeacher(Named):
    """Rationales computed from each reasoning-gym problem's own solution (factory/programs)."""

    backend: Literal["program"]
    name: str = "program"


Teacher = Annotated[
    OpenAITeacher | TransformersTeacher | ReplayTeacher | ProgramTeacher,
    Field(discriminator="backend"),
]

# --- cot, dataset and the later sections ------------------------------------------------------


class EvalSet(Strict):
    """An evaluation set the training questions are checked against: local rows or a Hub
    dataset split, with the column that holds the question."""

    name: str
    files: str | None = Field(None, description="a .jsonl, .json, .csv or .parquet file")
    hub: str | None = Field(None, description="a Hub dataset id")
    subset: str | None = None
    split: str = "test"
    column: str = "question"

    _name = field_validator("name")(lambda name: _valid(name, name_problem))

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

    _repo_id = field_validator("repo_id")(lambda repo_id: _valid(repo_id, repo_id_problem))

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


class EvalSpec(Strict):
    max_new_tokens: int = Field(256, ge=1, le=limits.MAX_TOKENS)
    batch_size: int = Field(16, ge=1, le=limits.MAX_BATCH)
    limit: int | None = Field(None, ge=1, le=limits.MAX_PROBLEMS)
    dtype: Literal["auto", "float32", "bfloat16"] = Field(  # left out of dumps (and so of the
        "auto",  # recipe hash) at its default: recipes that do not set it keep their identity
        description="the dtype students are evaluated in; auto: see factory/precision.py",
        exclude_if=lambda dtype: dtype == "auto",
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

    _repo_id = field_validator("repo_id")(lambda repo_id: _valid(repo_id, repo_id_problem))
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

    _name = field_validator("name")(lambda name: _valid(name, name_problem))

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


def _valid(value: str | None, problem_of) -> str | None:
    if value is not None and (problem := problem_of(value)):
        raise ValueError(problem)
    return value
