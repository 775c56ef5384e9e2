"""The report's statistics against values computed by hand: exact McNemar and sign-flip
p-values, Holm's correction, the paired interval, a pooled config's own interval, seeds pooled
per problem, comparisons aligned
by problem id, and the recommendation they lead to."""

from __future__ import annotations

import pytest

from factory.comparisons import BASE, Outcomes, between, compare, compare_all, ranked, recommend
from factory.stats import (
    holm,
    mcnemar_exact,
    paired_interval,
    pooled_interval,
    sign_flip_p,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (1, 8, 0.0390625),  # 2 * (C(9,0) + C(9,1)) / 2^9 = 2 * 10 / 512
        (8, 1, 0.0390625),  # symmetric
        (2, 10, 0.03857421875),  # 2 * (1 + 12 + 66) / 2^12 = 158 / 4096
        (0, 5, 0.0625),  # 2 * C(5,0) / 2^5 = 2 / 32
        (5, 5, 1.0),  # b = c: 2 * (more than half the mass), capped at 1
        (0, 0, 1.0),  # no discordant problem: no evidence at all
    ],
)
def test_exact_mcnemar_is_the_binomial_tail_on_the_discordant_pairs(b, c, p):
    assert mcnemar_exact(b, c) == p


def test_the_sign_flip_test_is_exact_mcnemar_with_one_seed():
    for b in range(13):
        for c in range(13):
            differences = [1] * b + [-1] * c + [0] * 4
            assert sign_flip_p(differences) == pytest.approx(mcnemar_exact(b, c), abs=1e-15)


@pytest.mark.parametrize(
    ("differences", "p"),
    [
        # signs of (3, 1, 1): sums 5, 3, 3, 1, -1, -3, -3, -5; |sum| >= 5 in 2 of 8
        ([3, 1, 1], 0.25),
        # observed |3 - 1 - 1| = 1: every one of the 8 sums reaches it
        ([3, -1, -1], 1.0),
        # the same problems in units of 1/2: the p-value does not depend on the unit
        ([6, 2, 2, 0, 0], 0.25),
        # +-2 and three +-1 (sums 3, 1, 1, 1, -1, -1, -1, -3): totals with |t| >= 3 are
        # 2 + {3, 1, 1, 1} -> 5, 3, 3, 3 and -2 + {-1, -1, -1, -3} -> -3, -3, -3, -5: 8 of 16
        ([2, 1, 1, -1], 0.5),
        # only all-plus (22) and all-minus reach |22|; flipping the 2 alone gives 18: 2 of 64
        ([2, 4, 4, 4, 4, 4], 0.03125),
        ([0, 0, 0], 1.0),
    ],
)
def test_sign_flip_p_values_counted_by_hand(differences, p):
    assert sign_flip_p(differences) == p


def test_holm_by_hand():
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> kept at 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # 0.01 * 3 = 0.03, 0.6 * 2 = 1.2 -> capped at 1, 0.7 * 1 -> never below 1
    assert holm([0.6, 0.01, 0.7]) == pytest.approx([1.0, 0.03, 1.0])
    assert holm([0.2]) == [0.2] and holm([]) == []


def test_paired_interval_on_a_small_table_by_hand():
    # one seed, n = 20: b = 6 only a right, c = 1 only b right, 13 concordant.
    # Agresti-Min: n' = 22, b' = 6.5, c' = 1.5; d' = (6.5 - 1.5) / 22 = 0.227273;
    # se^2 = ((b' + c') - (b' - c')^2 / n') / n'^2 = (8 - 25/22) / 484 = 0.0141811,
    # se = 0.119084, 1.96 se = 0.233405 -> [-0.006132, 0.460678]
    low, high = paired_interval(total=6 - 1, squares=6 + 1, n=20)
    assert (low, high) == pytest.approx((-0.006132, 0.460678), abs=1e-6)
    # no discordant problem in 10: mean 0, variance (0 + 1) / 12, se = sqrt(1/12 / 12) = 1/12
    assert paired_interval(0, 0, 10) == pytest.approx((-1.96 / 12, 1.96 / 12))
    # seed shares d = (1, .5, -.5, 0, 0, 0): sum 1, squares 1.5, n' = 8; mean 0.125,
    # variance 2.5/8 - 0.125^2 = 0.296875, se = sqrt(0.296875 / 8) = 0.192638, 1.96 se = 0.377570
    assert paired_interval(1, 1.5, 6) == pytest.approx((-0.252570, 0.502570), abs=1e-6)
    # all 7 problems d = 1: 7/9 + 1.96 sqrt((8/9 - 49/81) / 9) = 1.126 is clipped at 1
    assert paired_interval(7, 7, 7) == pytest.approx((0.429636, 1.0), abs=1e-6)


def test_wilson_interval_by_hand():
    # 3 of 10: centre (0.3 + 3.8416/20) / 1.38416 = 0.355508; margin
    # 1.96 sqrt(0.021 + 3.8416/400) / 1.38416 = 0.247719 -> [0.107789, 0.603227]
    assert wilson_interval(3, 10) == pytest.approx((0.107789, 0.603227), abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 0.0)


def test_a_pooled_config_counts_its_problems_not_its_seed_evaluations():
    # one seed: shares are 0 or 1, variance p(1 - p), so the effective n is n: plain Wilson
    assert pooled_interval([1.0, 0.0, 0.0, 1.0, 0.0]) == pytest.approx(wilson_interval(2, 5))
    # two seeds that agree on every problem are one seed's evidence, not twice as many problems
    assert pooled_interval([1.0] * 3 + [0.0] * 7) == pytest.approx(wilson_interval(3, 10))
    # shares (1, .5, 0, 0): p = 0.375, variance (0.625^2 + 0.125^2 + 2 * 0.375^2) / 4 = 0.171875,
    # effective n = 4 * 0.375 * 0.625 / 0.171875 = 60/11; Wilson at p = 0.375, n = 60/11:
    # centre 0.426659, margin 0.315476 -> [0.111183, 0.742128]
    assert pooled_interval([1.0, 0.5, 0.0, 0.0]) == pytest.approx((0.111183, 0.742128), abs=1e-6)
    # no spread between problems at all (each of 10 solved by one of two seeds): the effective
    # n would be unbounded; it stays at the 10 problems, Wilson at p = 0.5, n = 10
    assert pooled_interval([0.5] * 10) == pytest.approx((0.236590, 0.763410), abs=1e-6)
    assert pooled_interval([]) == (0.0, 0.0)


def test_seeds_pool_per_problem_over_the_problems_every_seed_evaluated():
    seed0 = [{"id": i, "correct": ok} for i, ok in zip("abcd", (1, 1, 0, 1), strict=True)]
    seed1 = [{"id": i, "correct": ok} for i, ok in zip("abc", (1, 0, 0), strict=True)]
    pooled = Outcomes.pooled([seed0, seed1])
    # a: both seeds right, b: one of two, c: none; d is left out (seed 1 did not evaluate it)
    assert pooled == Outcomes(2, {"a": 2, "b": 1, "c": 0})


def test_a_two_seed_config_against_the_base_model_by_hand():
    # shares of 2 seeds right on p1..p6, and the base model's one evaluation (p7 only there)
    config = Outcomes(2, {"p1": 2, "p2": 1, "p3": 1, "p4": 0, "p5": 2, "p6": 0})
    base = Outcomes(1, {"p1": 0, "p2": 0, "p3": 1, "p4": 0, "p5": 1, "p6": 0, "p7": 1})
    c = compare("cot-L3", config, BASE, base)
    # d = (1, .5, -.5, 0, 0, 0) on the 6 shared problems: accuracies 6/12 and 2/6
    assert (c.n, c.seeds, c.test) == (6, (2, 1), "exact sign-flip")
    assert (c.accuracy_a, c.accuracy_b) == (0.5, pytest.approx(1 / 3))
    assert c.difference == pytest.approx(1 / 6) and (c.a_better, c.b_better) == (2, 1)
    # in halves d = (2, 1, -1): signs give 4, 2, 2, 0, 0, -2, -2, -4; |sum| >= 2 in 6 of 8
    assert c.p == 0.75
    assert c.ci95 == (-0.2526, 0.5026)  # test_paired_interval_on_a_small_table_by_hand
    back = c.flipped()
    assert (back.a, back.b, back.a_better, back.b_better) == (BASE, "cot-L3", 1, 2)
    assert back.difference == pytest.approx(-1 / 6) and back.ci95 == (-0.5026, 0.2526)


def test_one_seed_comparisons_are_exact_mcnemar_on_the_shared_ids():
    x = Outcomes(1, {i: int(i < 10) for i in range(12)})
    y = Outcomes(1, {i: int(i in (0, 1, 10)) for i in range(14)})  # ids 12, 13 only in y
    c = compare("x", x, "y", y)
    # only x right: 2..9 (b = 8); only y right: 10 (c = 1)
    assert (c.n, c.a_better, c.b_better, c.test) == (12, 8, 1, "exact McNemar")
    assert c.p == 0.0390625 and c.difference == pytest.approx((10 - 3) / 12)


def study(n: int, right: dict[str, range]) -> tuple[dict, list]:
    """One-seed arms, each right on the problems `right` names; the base model last."""
    arms = {name: Outcomes(1, {i: int(i in ids) for i in range(n)}) for name, ids in right.items()}
    accuracies = {name: len(ids) / n for name, ids in right.items() if name != BASE}
    order = ranked(accuracies) + ([BASE] if BASE in arms else [])
    return accuracies, compare_all(arms, order)


def test_holm_runs_over_every_comparison_of_the_student():
    _, comparisons = study(20, {"A": range(10), "B": range(7), BASE: range(2)})
    by_pair = {(c.a, c.b): c for c in comparisons}
    assert list(by_pair) == [("A", "B"), ("A", BASE), ("B", BASE)]
    # discordant all one way: b = 3, 8, 5 -> p = 2/8, 2/256, 2/32
    assert [c.p for c in comparisons] == [0.25, 0.0078125, 0.0625]
    # Holm: 0.0078125 * 3 = 0.0234375, 0.0625 * 2 = 0.125, 0.25 * 1 = 0.25
    assert [c.p_holm for c in comparisons] == [0.25, 0.0234375, 0.125]
    assert [c.significant for c in comparisons] == [False, True, False]
    assert between(comparisons, BASE, "A").difference == pytest.approx(-8 / 20)
    assert between(comparisons, "A", "C") is None


def test_recommendation_says_plainly_when_the_difference_is_noise():
    close = recommend(*study(300, {"cot-L1": range(50), "cot-L3": range(53)}))
    # b = 3, c = 0: p = 2/8 = 0.25, the only comparison, so Holm leaves it at 0.25
    assert close["best"] == "cot-L3" and close["separated"] is False
    assert (
        "within the sampling noise (paired test on 300 problems, Holm-adjusted p = 0.25)"
        in (close["text"])
    )
    assert "measure on more test problems or seeds" in close["text"]
    clear = recommend(*study(300, {"cot-L1": range(20), "cot-L3": range(90)}))
    assert (
        clear["separated"] is True
        and "by 23.3 points; the difference is significant" in (clear["text"])
    )


def test_recommendation_names_ties_the_noise_band_and_the_lift_over_base():
    runs = {"cot-L2": range(42), "cot-L3": range(42), "cot-L1": range(35)}
    runs |= {"answer-only": range(10), BASE: range(6)}
    advice = recommend(*study(300, runs))
    # 10 comparisons; L2 vs L1 has b = 7, c = 0: p = 2/128 = 0.015625, as has L3 vs L1. The
    # eight others are 1.0 (L2 vs L3), 0.125 (answer-only vs base: b = 4), and six below 1e-7,
    # so the two 0.015625 rank 7th and 8th of 10: max(4 * 0.015625, 3 * 0.015625) = 0.0625
    assert advice["best"] == "cot-L2" and advice["tied"] == ["cot-L3"]
    assert advice["runner_up"] == "cot-L1" and advice["margin"] == round(7 / 300, 4)
    assert advice["within_noise"] == ["cot-L1"] and advice["clearly_below"] == ["answer-only"]
    assert advice["above_answer_only"] == ["cot-L2", "cot-L3", "cot-L1"]
    assert advice["lift_over_base"] == 0.12 and advice["beyond_base_noise"] is True
    assert advice["text"].startswith(
        "`cot-L2` and `cot-L3` tie at 14.0% and beat the runner-up `cot-L1` (11.7%) by 2.3 "
        "points; the difference is within the sampling noise (paired test on 300 problems, "
        "Holm-adjusted p = 0.0625)"
    )
    assert "Over the untrained base model (2.0%): +12.0 points, significant" in advice["text"]
    only_ties = recommend(*study(300, {"cot-L2": range(42), "cot-L3": range(42)}))
    assert only_ties["text"] == "`cot-L2` and `cot-L3` tie at 14.0%: nothing separates them."


def test_the_report_table_shows_the_best_and_each_config_against_answer_only_and_base():
    from factory.report import _comparison_table

    runs = {"cot-L3": range(10), "cot-L2": range(8), "answer-only": range(6), "cot-L1": range(4)}
    rows = _comparison_table(*study(20, runs | {BASE: range(2)}))
    shown = [row.split(" | ")[0][2:] for row in rows if row.startswith("| `")]
    assert shown == [
        "`cot-L3` vs `cot-L2`",
        "`cot-L3` vs `answer-only`",
        "`cot-L3` vs `cot-L1`",
        "`cot-L2` vs `answer-only`",
        "`cot-L1` vs `answer-only`",  # stored as answer-only vs cot-L1, read the other way
        "`cot-L3` vs `base`",
        "`cot-L2` vs `base`",
        "`answer-only` vs `base`",
        "`cot-L1` vs `base`",
    ]  # cot-L2 vs cot-L1, the tenth, only in results.json
    assert "Holm's correction over all 10 comparisons" in rows[0]
    # cot-L1 right on 4 of 20, answer-only on 6 (the same 4 and 2 more): b = 0, c = 2
    flipped = next(row for row in rows if row.startswith("| `cot-L1` vs `answer-only`"))
    assert "| 20 | 20.0% vs 30.0% | -10.0 | [" in flipped and "| 0 / 2 | 0.5 |" in flipped
