"""A dataset config's statistics, counted a trace at a time (`Tally`), so a build keeps counts,
not rows: what the card and the manifest say of each config (rows kept and dropped by reason,
teacher accuracy, mean steps and tokens, pass rate and difficulty, usage and its price, the
thinking's length, contamination, a mixture's composition) without holding its traces.

Distributions keep a count per value (`spread`), and difficulty one pass-rate bin per problem: a
config's memory grows with its problems, never with its traces.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from factory.contamination import flagged

BINS = ("0%", "1-25%", "26-50%", "51-75%", "76-99%", "100%")


def rate_bin(rate: float) -> int:
    """The difficulty bin of a problem's pass rate: never, sometimes (by quarter), always."""
    return 0 if rate == 0 else 5 if rate == 1 else 1 + min(3, int(rate * 4 - 1e-9))


def mean_of(total: int, n: int) -> int | float:
    """`statistics.mean` of `n` ints summing to `total`: an int when it divides evenly."""
    return total // n if total % n == 0 else total / n


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 1)


def spread(counts: Counter) -> dict | None:
    """`factory.reasoning.distribution` of the values `counts` counts (value -> times): mean,
    min, inclusive quartiles and max, or None when there are none."""
    n = counts.total()
    if not n:
        return None
    ordered = sorted(counts.items())

    def nth(k: int) -> int:  # the k-th smallest value, from 0
        for value, times in ordered:
            if k < times:
                return value
            k -= times
        raise IndexError(k)

    quartiles = [ordered[0][0]] * 3
    if n > 1:
        cuts = [divmod(i * (n - 1), 4) for i in (1, 2, 3)]
        quartiles = [(nth(j) * (4 - d) + nth(j + 1) * d) / 4 for j, d in cuts]
    low, median, high = quartiles
    values = {"min": ordered[0][0], "p25": low, "median": median, "p75": high}
    values["max"] = ordered[-1][0]
    total = sum(value * times for value, times in ordered)
    return {"n": n, "mean": _number(mean_of(total, n))} | {k: _number(v) for k, v in values.items()}


@dataclass
class Usage:
    """What asking for a config's traces took, as the endpoint counted it."""

    requests: int = 0
    known: int = 0  # traces with a usage
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int | None = None

    def add(self, usage: dict | None) -> None:
        self.requests += 1
        if not usage:
            return
        self.known += 1
        self.prompt_tokens += usage.get("prompt_tokens") or 0
        self.completion_tokens += usage.get("completion_tokens") or 0
        if "reasoning_tokens" in usage:
            self.reasoning_tokens = (self.reasoning_tokens or 0) + usage["reasoning_tokens"]

    def stats(self, teacher) -> dict:
        """Requests, prompt and completion tokens (`unknown`: traces with no usage), priced when
        the recipe says how; thinking tokens, included in completion tokens, where counted."""
        tokens = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}
        tokens = {k: v if self.known else None for k, v in tokens.items()}
        price, cost = getattr(teacher, "price", None), None
        if price and self.known:
            cost = self.prompt_tokens * price.input + self.completion_tokens * price.output
            cost = round(cost / 1e6, 4)
        if self.reasoning_tokens is not None:
            tokens["reasoning_tokens"] = self.reasoning_tokens
        unknown = self.requests - self.known
        return {"requests": self.requests, **tokens, "unknown": unknown, "cost": cost}


@dataclass
class Thinking:
    """The thinking of a config's kept rows: where it was found, and its length."""

    rows: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    tokens: Counter = field(default_factory=Counter)
    steps: Counter = field(default_factory=Counter)
    endpoint: Counter = field(default_factory=Counter)  # the endpoint's reasoning tokens

    def add(self, trace: dict) -> None:
        if not trace.get("reasoning"):
            return
        self.rows += 1
        source = trace["reasoning_source"]
        self.sources[source] = self.sources.get(source, 0) + 1
        self.tokens[trace["num_reasoning_tokens"]] += 1
        self.steps[trace["num_reasoning_steps"]] += 1
        usage = trace.get("usage") or {}
        if "reasoning_tokens" in usage:
            self.endpoint[usage["reasoning_tokens"]] += 1

    def stats(self) -> dict | None:
        """As `factory.reasoning.thinking_stats` says it, or None without thinking."""
        if not self.rows:
            return None
        return {
            "rows": self.rows,
            "sources": self.sources,
            "tokens": spread(self.tokens),
            "steps": spread(self.steps),
            "endpoint_tokens": spread(self.endpoint),
        }


@dataclass
class Tally:
    """One config's counts. A trace comes with its `pass_rate`; the last one seen of a problem
    gives its difficulty bin."""

    traces: int = 0
    kept: int = 0
    correct: int = 0
    steps: int = 0  # of the kept traces, as are tokens
    tokens: int = 0
    dropped: Counter = field(default_factory=Counter)
    bins: dict[str, int] = field(default_factory=dict)  # problem id -> `rate_bin`
    contamination: Counter = field(default_factory=Counter)
    composition: Counter = field(default_factory=Counter)  # a mixture's rows by source config
    usage: Usage = field(default_factory=Usage)
    thinking: Thinking = field(default_factory=Thinking)

    def add(self, trace: dict) -> None:
        self.traces += 1
        self.correct += trace["correct"]
        self.bins[trace["problem_id"]] = rate_bin(trace["pass_rate"])
        self.contamination.update(flagged(trace))
        self.usage.add(trace.get("usage"))
        if trace["drop_reason"] is not None:
            self.dropped[trace["drop_reason"]] += 1
            return
        self.kept += 1
        self.steps += trace["num_steps"]
        self.tokens += trace["num_tokens"]
        self.thinking.add(trace)
        self.composition[trace.get("source_config", trace["config"])] += 1

    def difficulty(self) -> dict[str, int]:
        """How many problems the teacher passed never, sometimes (by quarter) and always."""
        if not self.traces:
            return {}
        counted = Counter(self.bins.values())
        return {label: counted[i] for i, label in enumerate(BINS)}

    def solved_share(self) -> float | None:
        """The share of answered problems with at least one kept trace."""
        solved = sum(b > 0 for b in self.bins.values())
        return round(solved / len(self.bins), 4) if self.bins else None
