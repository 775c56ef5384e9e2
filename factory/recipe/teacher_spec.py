"""The recipe's `teacher` section: who writes the rationales, in four backends."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from factory.recipe import limits
from factory.recipe.base import Named, Seed, Strict
from factory.recipe.names import KeyedError, unique
from factory.recipe.plans import SHAPE_NAME

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
# The reasoning-gym tasks and the formats factory/programs writes rationales for.
PROGRAM_TASKS: tuple[str, ...] = ("basic_arithmetic", "chain_sum", "leg_counting")
PROGRAM_FORMATS: tuple[str, ...] = ("cot", "subq", "sym")


class Sampling(Named):
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, ge=1, le=limits.MAX_TOKENS)
    seed: Seed | None = 0
    limit: int | None = Field(
        None,
        ge=1,
        le=limits.MAX_PROBLEMS,
        description="ask this teacher about the first N training problems only",
        exclude_if=lambda value: value is None,
    )
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


class Endpoint(Strict):
    """An OpenAI-compatible server, or replicas of one (several vLLM servers) sharing
    `concurrency`: what an `openai` teacher asks and what `eval.endpoint` names."""

    base_url: str | Annotated[list[str], Field(min_length=1)] = Field(
        description="the endpoint, or a list of replicas of one model sharing `concurrency`; "
        "answers do not depend on which replica gave them",
    )
    api_key_env: str | None = None
    concurrency: int = Field(8, ge=1, le=limits.MAX_CONCURRENCY)
    max_retries: int = Field(6, ge=0, le=limits.MAX_RETRIES)
    timeout: float = Field(120.0, gt=0, le=limits.MAX_TIMEOUT)

    @field_validator("base_url")
    @classmethod
    def _replicas_unique(cls, base_url: str | list[str]) -> str | list[str]:
        return base_url if isinstance(base_url, str) else unique(base_url)

    @model_validator(mode="after")
    def _a_share_per_replica(self) -> Endpoint:
        n = 1 if isinstance(self.base_url, str) else len(self.base_url)
        if self.concurrency < n:
            message = f"{n} replicas need a concurrency of at least {n}, one request each"
            raise KeyedError(("concurrency",), message)
        return self


class OpenAITeacher(Sampling, Endpoint):
    backend: Literal["openai"]
    name: str | None = None
    model: str
    base_url: str | Annotated[list[str], Field(min_length=1)] = Field(
        "https://api.openai.com/v1",
        description="the endpoint, or a list of replicas of one model (several vLLM servers) "
        "sharing `concurrency`; answers do not depend on which replica gave them",
    )
    api_key_env: str | None = "OPENAI_API_KEY"
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
