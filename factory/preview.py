"""A build's preview: what the teachers answered for the first few problems of every config, and
what the full build would ask and cost. `factory.run.preview_dataset` asks (through the cache, so
the full build reuses every answer); this module sums it up and writes the text the CLI prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import mean

from factory.answers import split_thinking
from factory.recipe import Recipe, plan_configs, teacher_name

ASKED = ("openai", "transformers")  # the teachers a build asks (replay and programs cost nothing)
KEPT_LINES, LINE_CHARS = 2, 160  # a long sample's thinking: its first and last lines, this long


@dataclass(frozen=True)
class ConfigPreview:
    """One config's answers in the preview, and its share of the full build."""

    config: str
    answers: int
    kept: int
    completion_tokens: float | None  # per answer: the endpoint's count, else words
    reasoning_tokens: float | None
    sample: str | None  # a kept completion (else the first one), its thinking shortened
    full: dict | None  # the full build's requests, tokens and cost; None: asks nothing itself


@dataclass(frozen=True)
class Preview:
    recipe: Recipe
    problems: int  # asked about, per config
    train: int  # the full build's training problems
    configs: list[ConfigPreview]


def preview_recipe(recipe: Recipe) -> Recipe:
    """The recipe as the preview asks it: one sample per problem (sample 0, as the full build
    asks it first), no resampling."""
    cot = recipe.cot.model_copy(update={"samples": 1, "max_attempts": None})
    return recipe.model_copy(update={"cot": cot})


def summarize(recipe: Recipe, traces: list[dict], train: int, problems: int) -> Preview:
    """The preview of verified `traces` of the first `problems` of `train` problems."""
    detected = {t["teacher"] for t in traces if t.get("thinking")}
    teachers = {teacher_name(t): t for t in recipe.teacher}
    configs = []
    for plan in plan_configs(recipe, detected):
        rows = [t for t in traces if t["config"] == plan.name]
        if rows:
            spec = None if plan.thinking else teachers.get(plan.teacher)
            spec = spec if getattr(spec, "backend", None) in ASKED else None
            configs.append(_config(recipe, plan.name, rows, spec, train))
    return Preview(recipe, min(problems, train), train, configs)


def _config(recipe: Recipe, name: str, rows: list[dict], spec, train: int) -> ConfigPreview:
    kept = [t for t in rows if t["drop_reason"] is None]
    usages = [t.get("usage") or {} for t in rows]
    completion = _mean([u.get("completion_tokens") for u in usages]) or _mean(
        [t["num_tokens"] for t in rows]
    )
    thinking = _mean([u.get("reasoning_tokens") for u in usages]) or _mean(
        [t.get("num_reasoning_tokens") for t in rows]
    )
    return ConfigPreview(
        config=name,
        answers=len(rows),
        kept=len(kept),
        completion_tokens=completion,
        reasoning_tokens=thinking,
        sample=shorten((kept or rows)[0]["completion"]),
        full=None if spec is None else estimate(recipe, spec, usages, train),
    )


def estimate(recipe: Recipe, spec, usages: list[dict], train: int) -> dict:
    """What one config of a teacher would take in the full build: a request per problem and
    sample (up to `cot.max_attempts` with resampling), the preview's mean tokens per request
    for each, priced with the teacher's `price`."""
    requests = train * recipe.cot.samples
    at_most = train * (recipe.cot.max_attempts or recipe.cot.samples)
    tokens = {
        kind: None if (m := _mean([u.get(kind) for u in usages])) is None else round(m * requests)
        for kind in ("prompt_tokens", "completion_tokens", "reasoning_tokens")
    }
    price, cost = getattr(spec, "price", None), None
    if price and tokens["prompt_tokens"] is not None and tokens["completion_tokens"] is not None:
        spent = tokens["prompt_tokens"] * price.input + tokens["completion_tokens"] * price.output
        cost = round(spent / 1e6, 4)
    return {"requests": requests, "at_most": at_most, **tokens, "cost": cost}


def shorten(text: str) -> str:
    """A completion with its thinking cut to its first and last lines (each at most
    `LINE_CHARS` characters): enough to see how it starts and ends."""
    thinking, answer, _ = split_thinking(text)
    if thinking is None:
        return text
    lines = [_clip(line) for line in thinking.splitlines() if line.strip()]
    if len(lines) > 2 * KEPT_LINES:
        hidden = len(lines) - 2 * KEPT_LINES
        lines = [*lines[:KEPT_LINES], f"[... {hidden} more lines ...]", *lines[-KEPT_LINES:]]
    return "\n".join(["<think>", *lines, "</think>", "", answer])


def _clip(line: str) -> str:
    return line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 1].rstrip() + "…"


def _mean(values: list) -> float | None:
    counted = [v for v in values if v is not None]
    return round(mean(counted), 1) if counted else None


# --- the text the CLI prints ------------------------------------------------------------------


def preview_text(preview: Preview) -> str:
    """The preview as the CLI prints it: per config the answers, the verified share and the mean
    completion and thinking tokens per answer; one sample each; the full build's estimate."""
    recipe = preview.recipe
    lines = [
        f"preview of {recipe.name} ({recipe.tag}): the first {preview.problems} of "
        f"{preview.train} training problems, sample 0, per config; no dataset written or "
        "published; teacher answers are cached for the full build",
        f"{'config':<24} {'answers':>7} {'verified':>9} {'tokens':>9} {'thinking':>9}",
    ]
    for c in preview.configs:
        share = f"{100 * c.kept / c.answers:.1f}%"
        lines.append(
            f"{c.config:<24} {c.answers:>7} {share:>9} "
            f"{_or_dash(c.completion_tokens):>9} {_or_dash(c.reasoning_tokens):>9}"
        )
    for c in preview.configs:
        lines += ["", f"--- {c.config} ---", c.sample or "(no answer)"]
    return "\n".join([*lines, "", *estimate_lines(preview)])


def estimate_lines(preview: Preview) -> list[str]:
    """What the full build would ask, per teacher config and in all."""
    asking = [c for c in preview.configs if c.full]
    if not asking:
        return ["full build: asks no teacher (its rationales come from files or programs)"]
    lines = ["full build, at the preview's mean tokens per request:"]
    for c in asking:
        lines.append(f"  {c.config:<22} {_cost_line(c.full)}")
    total = {k: _sum([c.full[k] for c in asking]) for k in asking[0].full}
    total["cost"] = None if total["cost"] is None else round(total["cost"], 4)
    lines.append(f"  {'all':<22} {_cost_line(total)}")
    lines.append("  (-think configs reuse their short twin's answers: no requests of their own)")
    return lines


def _cost_line(full: dict) -> str:
    tokens = ", ".join(
        f"{_or_dash(full[k])} {label}"
        for k, label in (("prompt_tokens", "prompt"), ("completion_tokens", "completion"))
    )
    thinking = f" (thinking {full['reasoning_tokens']})" if full["reasoning_tokens"] else ""
    cost = "cost unknown (no teacher.price)" if full["cost"] is None else f"cost {full['cost']}"
    upto = (
        f", up to {full['at_most']} with resampling" if full["at_most"] > full["requests"] else ""
    )
    return f"{full['requests']} requests{upto}; tokens {tokens}{thinking}; {cost}"


def _sum(values: list):
    return None if any(v is None for v in values) else sum(values)


def _or_dash(value) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)
