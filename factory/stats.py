"""Statistics for accuracies measured on a finite set of problems, alone and paired.

The paired tools work on per-problem differences d_i between two arms scored on the same
problems: d_i is in {-1, 0, 1} with one evaluation each, and a multiple of 1/(k_a k_b) when
the arms pool k_a and k_b seeds (each problem counts as the share of seeds that got it right).
"""

from __future__ import annotations

import math
from functools import reduce


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion: honest at small n and near 0 or 1."""
    return _wilson(correct / total, total, z) if total else (0.0, 0.0)


def pooled_interval(shares: list[float], z: float = 1.96) -> tuple[float, float]:
    """95% interval of a mean accuracy over n problems, each scored as the share of a config's
    seeds that got it right: the Wilson interval at the effective sample size
    n p(1 - p) / s^2 (Kish's design effect), s^2 being the variance of the shares about their
    mean p. The problems are the sampled units: seeds that always agree count n, no more than one
    seed; seeds that agree no more than chance count up to k n; one seed gives the plain Wilson
    interval on n."""
    n = len(shares)
    if n == 0:
        return 0.0, 0.0
    p = sum(shares) / n
    variance = sum((x - p) ** 2 for x in shares) / n
    effective = n * p * (1 - p) / variance if variance > 0 else n
    return _wilson(p, effective, z)


def _wilson(p: float, n: float, z: float) -> tuple[float, float]:
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - margin), min(1.0, centre + margin)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b problems only the first arm got right and c only
    the second did: under no difference each of the n = b + c discordant problems goes either
    way with probability 1/2, so p = min(1, 2 * sum_{k <= min(b, c)} C(n, k) / 2^n)."""
    n = b + c
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def sign_flip_p(differences: list[int]) -> float:
    """Exact two-sided p-value of the paired sign-flip (permutation) test on integer
    per-problem differences: under no difference each d_i is as likely to be -d_i, so
    p = P(|sum s_i d_i| >= |sum d_i|) over the 2^m equally likely signs s of the m nonzero d_i.
    With every d_i in {-1, 0, 1} this is exact McNemar. Counted exactly, problem by problem."""
    nonzero = [abs(d) for d in differences if d]
    if not nonzero:
        return 1.0
    unit = reduce(math.gcd, nonzero)
    steps = [d // unit for d in nonzero]
    observed = abs(sum(differences)) // unit
    counts = [1]  # counts[t + offset]: sign vectors so far whose sum is t
    for step in steps:
        pad = [0] * step
        counts = [x + y for x, y in zip(pad * 2 + counts, counts + pad * 2, strict=True)]
    offset = sum(steps)
    extreme = sum(n for t, n in enumerate(counts) if abs(t - offset) >= observed)
    return extreme / 2 ** len(steps)


def paired_interval(total: float, squares: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval for a mean paired difference, from the sum and the sum of squares of the n
    per-problem differences: the adjusted Wald interval of Agresti and Min (2005), which adds
    half a problem to each cell of the 2x2 table (n' = n + 2, one more discordant problem
    either way). With one evaluation each that is d' = (b - c)/n' and
    se^2 = ((b + c + 1) - (b - c)^2 / n') / n'^2; with seed shares the same pseudo-problems go
    into the mean and variance of the fractional d_i. Chosen over a paired bootstrap because it
    is closed form (no resampling seed, checkable by hand), keeps near nominal coverage at small
    n, and is never of zero width when b = c = 0 (plain Wald is)."""
    size = n + 2
    mean = total / size
    variance = max(0.0, (squares + 1) / size - mean * mean)
    margin = z * math.sqrt(variance / size)
    return max(-1.0, mean - margin), min(1.0, mean + margin)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order: the i-th smallest of m
    (i = 0, 1, ...) is multiplied by m - i, capped at 1, and never below an earlier one.
    Rejecting where the adjusted p <= alpha holds the family-wise error rate at alpha."""
    m = len(pvalues)
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
