"""Paired comparisons of one student's arms (its configs and the untrained base model) on the
test problems they share.

Seeds are pooled per problem: a config evaluated with k seeds scores each problem as the share
of its seeds that got it right (only problems every seed evaluated count). Two arms are compared
on the problems both evaluated (matched by id) through the per-problem differences d_i:

- difference: mean d_i = accuracy of a - accuracy of b on those problems;
- ci95: the Agresti-Min adjusted Wald interval of that difference (`stats.paired_interval`),
  centred a little towards 0 (sum d_i / (n + 2));
- a_better, b_better: the discordant problems, where a (b) scored higher; with one evaluation
  each, McNemar's b and c;
- p: exact McNemar (`stats.mcnemar_exact`) when both arms have one evaluation, otherwise the
  exact sign-flip test on the d_i (`stats.sign_flip_p`), which is McNemar's test generalised to
  seed shares (and equal to it with one seed). Like McNemar's, it takes the problems as the
  sampled units; seeds are repeated measurements averaged within a problem, so seed-to-seed
  training variance is not a separate term (the run table's spread shows it);
- p_holm, significant: Holm's correction over the family of every comparison made for that
  student (every pair of its arms), significant where the adjusted p <= ALPHA.

`recommend` turns one student's comparisons into the report's recommendation.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

from factory.stats import holm, mcnemar_exact, paired_interval, sign_flip_p

BASE = "base"  # the arm name of the untrained student
ANSWER_ONLY = "answer-only"
ALPHA = 0.05
METHODS = {  # for results.json
    "pooling": "per problem, the share of a config's seeds that got it right",
    "alignment": "only problems both arms evaluated (matched by id); n says how many",
    "difference": "accuracy of a minus accuracy of b on those problems",
    "interval": "95% adjusted Wald interval for paired differences (Agresti and Min, 2005)",
    "test": "exact McNemar with one evaluation each, else exact sign-flip on seed shares",
    "correction": "Holm over every comparison of one student (all pairs of configs and base)",
    "alpha": ALPHA,
}


@dataclass(frozen=True)
class Outcomes:
    """One arm's per-problem results: for each problem id, how many of its `seeds`
    evaluations got it right."""

    seeds: int
    correct: dict

    @classmethod
    def pooled(cls, evaluations: list[list[dict]]) -> Outcomes:
        """Seeds pooled from their prediction rows (`id`, `correct`), on the problems every
        seed evaluated."""
        marks = [{row["id"]: bool(row["correct"]) for row in rows} for rows in evaluations]
        shared = set.intersection(*(set(m) for m in marks)) if marks else set()
        return cls(len(marks), {i: sum(m[i] for m in marks) for i in shared})

    def shares(self) -> list[float]:
        """Each problem's share of seeds that got it right."""
        return [right / self.seeds for right in self.correct.values()]


@dataclass(frozen=True)
class Comparison:
    """Arm a against arm b on the n problems both evaluated (see the module docstring)."""

    a: str
    b: str
    n: int
    seeds: tuple[int, int]
    accuracy_a: float
    accuracy_b: float
    difference: float
    ci95: tuple[float, float]
    a_better: int
    b_better: int
    test: str
    p: float
    p_holm: float | None = None
    significant: bool | None = None

    def flipped(self) -> Comparison:
        """The same comparison read as b against a."""
        return replace(
            self,
            a=self.b,
            b=self.a,
            seeds=self.seeds[::-1],
            accuracy_a=self.accuracy_b,
            accuracy_b=self.accuracy_a,
            difference=0.0 - self.difference,
            ci95=(0.0 - self.ci95[1], 0.0 - self.ci95[0]),
            a_better=self.b_better,
            b_better=self.a_better,
        )


def compare(a: str, x: Outcomes, b: str, y: Outcomes) -> Comparison:
    """Arm a (outcomes x) against arm b (outcomes y), unadjusted."""
    ids = set(x.correct) & set(y.correct)
    n, scale = len(ids), x.seeds * y.seeds
    # d_i * scale, an integer: a's seeds right / x.seeds - b's seeds right / y.seeds
    diffs = [x.correct[i] * y.seeds - y.correct[i] * x.seeds for i in ids]
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    one_seed = x.seeds == y.seeds == 1
    low, high = paired_interval(sum(diffs) / scale, sum(d * d for d in diffs) / scale**2, n)
    return Comparison(
        a=a,
        b=b,
        n=n,
        seeds=(x.seeds, y.seeds),
        accuracy_a=sum(x.correct[i] for i in ids) / (n * x.seeds) if n else 0.0,
        accuracy_b=sum(y.correct[i] for i in ids) / (n * y.seeds) if n else 0.0,
        difference=sum(diffs) / (n * scale) if n else 0.0,
        ci95=(round(low, 4), round(high, 4)),
        a_better=wins,
        b_better=losses,
        test="exact McNemar" if one_seed else "exact sign-flip",
        p=mcnemar_exact(wins, losses) if one_seed else sign_flip_p(diffs),
    )


def compare_all(arms: dict[str, Outcomes], order: list[str]) -> list[Comparison]:
    """Every pair of arms, a before b in `order`, with Holm's correction over them all."""
    pairs = list(itertools.combinations(order, 2))
    raw = [compare(a, arms[a], b, arms[b]) for a, b in pairs]
    adjusted = holm([c.p for c in raw])
    return [
        replace(c, p_holm=p, significant=p <= ALPHA) for c, p in zip(raw, adjusted, strict=True)
    ]


def between(comparisons: list[Comparison], a: str, b: str) -> Comparison | None:
    """The comparison of a against b, read in that direction; None if it was not made."""
    for c in comparisons:
        if (c.a, c.b) == (a, b):
            return c
        if (c.a, c.b) == (b, a):
            return c.flipped()
    return None


def ranked(accuracies: dict[str, float]) -> list[str]:
    """Config names, most accurate first; equal accuracies keep their order."""
    return sorted(accuracies, key=lambda config: accuracies[config], reverse=True)


def recommend(accuracies: dict[str, float], comparisons: list[Comparison]) -> dict:
    """The best configuration of one student (by pooled accuracy, config -> accuracy), which
    others are significantly below it and which within the noise, which configurations are
    significantly above `answer-only`, and the lift over the base model: the text and its keys."""
    order = ranked(accuracies)
    tied = [c for c in order if math.isclose(accuracies[c], accuracies[order[0]])]
    below = order[len(tied) :]
    parts = [
        _against_the_rest(accuracies, tied, below, comparisons)
        if below
        else _alone(accuracies, tied),
        _over_answer_only(order, comparisons),
        _over_base(order[0], comparisons),
    ]
    advice = {"best": order[0], "tied": tied[1:]}
    for _, keys in parts:
        advice.update(keys)
    return {**advice, "text": "".join(text for text, _ in parts)}


def _alone(accuracies: dict[str, float], tied: list[str]) -> tuple[str, dict]:
    best = _pct(accuracies[tied[0]])
    text = (
        f"{_names(tied, ' and ')} tie at {best}: nothing separates them."
        if len(tied) > 1
        else f"`{tied[0]}` ({best}) is the only configuration measured."
    )
    return text, {"runner_up": None, "margin": None, "separated": None}


def _over_answer_only(order: list[str], comparisons: list[Comparison]) -> tuple[str, dict]:
    if ANSWER_ONLY not in order or len(order) == 1:
        return "", {}
    above = [c for c in order if _beats(between(comparisons, c, ANSWER_ONLY))]
    return (
        f" Significantly above `{ANSWER_ONLY}`: {_names(above) or 'none'}.",
        {"above_answer_only": above},
    )


def _over_base(best: str, comparisons: list[Comparison]) -> tuple[str, dict]:
    base = between(comparisons, best, BASE)
    if not base:
        return "", {}
    text = (
        f" Over the untrained base model ({_pct(base.accuracy_b)}): "
        f"{100 * base.difference:+.1f} points, {_verdict(base)}."
    )
    return text, {
        "lift_over_base": round(base.difference, 4),
        "beyond_base_noise": base.significant,
    }


def _against_the_rest(accuracies, tied: list[str], below: list[str], comparisons) -> tuple:
    """The sentences and advice keys comparing the best with every configuration below it."""
    best, second = tied[0], below[0]
    versus = {c: between(comparisons, best, c) for c in below}
    top, margin = versus[second], accuracies[best] - accuracies[second]
    lead = f"`{best}` ({_pct(accuracies[best])}) beats"
    if len(tied) > 1:
        lead = f"{_names(tied, ' and ')} tie at {_pct(accuracies[best])} and beat"
    text = (
        f"{lead} the runner-up `{second}` ({_pct(accuracies[second])}) by "
        f"{100 * margin:.1f} points; the difference is {_verdict(top)}"
    )
    if not top.significant:
        text += ": treat the top configurations as tied and measure on more test problems or seeds"
        text += " before choosing"
    noise = [c for c in below if not versus[c].significant]
    clear = [c for c in below if versus[c].significant]
    text += "." + (f" Within the noise of the best: {_names(noise)}." if noise else "")
    text += f" Significantly below it: {_names(clear)}." if clear else ""
    keys = {"runner_up": second, "margin": round(margin, 4), "separated": top.significant}
    return text, {**keys, "within_noise": noise, "clearly_below": clear}


def _verdict(c: Comparison) -> str:
    holm = f"paired test on {c.n} problems, Holm-adjusted p = {c.p_holm:.3g}"
    return f"{'significant' if c.significant else 'within the sampling noise'} ({holm})"


def _beats(c: Comparison | None) -> bool:
    return bool(c and c.significant and c.difference > 0)


def _names(configs: list[str], sep: str = ", ") -> str:
    return sep.join(f"`{c}`" for c in configs)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"
