"""Whole teacher and student outputs against gold answers: what the extractor reads and the verdict.

One row per output: the text, the gold as a source gives it, the prediction `extract_answer` must
return and whether `is_correct` must accept it. The rows cover each way a wrong answer was judged
right (a rejected number read as the answer, large integers within a tolerance, option text read
as a letter) and each way a right answer was lost (markdown and quotes, a parenthetical after the
answer, a yes/no verdict with no answer line), for math, multiple choice and yes/no. `verify`,
which decides what enters a dataset, must agree with every row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from factory.answers import extract_answer, is_correct, normalize_gold
from factory.recipe import DROP_REASONS
from factory.verify import verify

BIOMES = ["a rainforest", "a tundra", "a savanna", "a desert"]
SUPPLIES = ["a pencil case", "a school notebook", "a stapler"]
MATERIALS = ["rubber", "copper", "glass", "mercury"]
ANIMALS = ["a trout", "a whale", "a lizard", "a bat"]
TRAIN = ["A)18", "B)24", "C)30", "D)36"]


@dataclass(frozen=True)
class Case:
    why: str
    gold: str
    predicted: str | None
    correct: bool
    output: str
    choices: list[str] | None = None


# fmt: off
MATH = [
    Case(
        "plain answer line", "15", "15", True,
        "Maria buys 4 packs of 6 pencils, so she has 4 * 6 = 24. She gives away 9, leaving "
        "24 - 9 = 15.\nThe answer is 15.",
    ),
    Case(
        "plain, wrong", "40", "35", False,
        "Lena runs 5 km a day for 7 days, so 5 * 7 = 35 km in all. The answer is 35.",
    ),
    Case(
        "negated gold, body states another", "54", "53", False,
        "Each crate holds 8 melons and there are 7 crates: 8 * 7 = 56. The answer is not "
        "54. After 3 spoil, 56 - 3 = 53 remain.",
    ),
    Case(
        "negated gold is the last number", "72", "60", False,
        "Tom reads 12 pages a day for 5 days, 12 * 5 = 60 pages. The answer is not 72.",
    ),
    Case(
        "negated gold, nothing else", "18", None, False,
        "I could not work out how many seats remain. The answer is not 18.",
    ),
    Case(
        "isn't", "165", "175", False,
        "The tank holds 250 litres and 75 are used, so 250 - 75 = 175 remain. The answer "
        "isn't 165.",
    ),
    Case(
        "retracted, then 'my answer is'", "240", "210", False,
        "Tickets cost $14 and the club bought 15, so 14 * 15 = 210 dollars. The answer is "
        "240 was incorrect, my answer is 210",
    ),
    Case(
        "retracted with 'which is wrong', restated", "144", "144", True,
        "The bakery made 3 batches of 48 rolls. The answer is 150, which is wrong. Counting "
        "again, 3 * 48 = 144, so the answer is 144.",
    ),
    Case(
        "retracted by the next sentence", "134", "144", False,
        "The farmer plants 9 rows of 16 trees. I first thought the answer is 134. Wait, "
        "that's wrong. 9 * 16 = 144 trees.",
    ),
    Case(
        "retracted in a parenthetical", "96", "108", False,
        "A cyclist rides 18 km a day for 6 days, 18 * 6 = 108 km. The answer is 96 "
        "(incorrect, the total should be 108)",
    ),
    Case(
        "'answer should be' in a parenthetical", "4830", "4640", False,
        "Materials cost 5040 and the discount is 400, so 5040 - 400 = 4640. The answer is "
        "4830 (error in the problem, answer should be 4640)",
    ),
    Case(
        "'but this is incorrect'", "180", "165", False,
        "Driving 3 hours at 55 km/h covers 3 * 55 = 165 km. The answer is 180, but this is "
        "incorrect, the correct answer should be 165",
    ),
    Case(
        "rejected with 'not' in the body", "30", "29", False,
        "Half of the 58 students joined the trip, so 58 / 2 = 29 students went, not 30.",
    ),
    Case(
        "rejected with 'rather than'", "16", "12", False,
        "The recipe needs 3 cups per cake and she bakes 4 cakes, so she uses 3 * 4 = 12 "
        "cups rather than 16.",
    ),
    Case(
        "doubted, then checked", "150", "150", True,
        "Six boxes hold 25 nails each. The answer is 150? Let me check: 25 * 6 = 150, so "
        "there are 150 nails.",
    ),
    Case(
        "doubted, then corrected", "42", "46", False,
        "The pen has 10 cows and 3 hens. The answer is 42? Counting legs again, 10 * 4 + 3 "
        "* 2 = 46.",
    ),
    Case(
        "large integer off by one", "1450000", "1450001", False,
        "The city had 1,450,000 residents and one more family member moved in: 1,450,000 + "
        "1 = 1,450,001. The answer is 1,450,001.",
    ),
    Case(
        "large integer slightly short", "#### 192000000", "191999999", False,
        "The plant makes 48,000,000 bolts a year; over 4 years I estimate 191,999,999 "
        "bolts. The answer is 191,999,999.",
    ),
    Case(
        "large integer equal", "192000000", "192000000", True,
        "The plant makes 48,000,000 bolts a year for 4 years: 48,000,000 * 4 = 192,000,000. "
        "The answer is 192,000,000.",
    ),
    Case(
        "float from a division", "1/3", "0.3333333", True,
        "Three friends share one pizza, so each gets 1 / 3 = 0.3333333 of it. The answer is "
        "0.3333333",
    ),
    Case(
        "two-place rounding of a third", "1/3", "0.33", True,
        "Each of the 3 friends gets 1 / 3 of the pizza, about 0.33. The answer is 0.33",
    ),
    Case(
        "one place is too coarse", "1/3", "0.3", False,
        "Each of the 3 friends gets roughly 0.3 of the pizza. The answer is 0.3",
    ),
    Case(
        "two places, wrong digit", "1/3", "0.35", False,
        "Each friend gets 1 / 3, which I wrote as 0.35. The answer is 0.35",
    ),
    Case(
        "exact decimal equals fraction", "11/4", "2.75", True,
        "Eleven quarters of a metre is 11 / 4 = 2.75 metres. The answer is 2.75",
    ),
    Case(
        "exact decimal, no tolerance", "2.75", "2.7", False,
        "Eleven quarters of a metre is about 2.7 metres. The answer is 2.7",
    ),
    Case(
        "LaTeX fraction against a decimal", "1.75", "\\frac{7}{4}", True,
        "Seven quarters of a cup remain after baking. The answer is $\\frac{7}{4}$.",
    ),
    Case(
        "bold number", "96", "96", True,
        "She saves $12 a week for 8 weeks: 12 * 8 = 96 dollars.\n\nThe answer is **96**.",
    ),
    Case(
        "quoted money", "42", "42", True,
        'The bill is 3 meals at $14 each, 3 * 14 = 42 dollars. The answer is "$42".',
    ),
    Case(
        "bold answer label", "17", "17", True,
        "Ben has 9 marbles and wins 8 more: 9 + 8 = 17.\n\n**Answer:** 17",
    ),
    Case(
        "code span", "64", "64", True,
        "Eight rows of eight tiles make 8 * 8 = 64 tiles. The answer is `64`.",
    ),
    Case(
        "single-star emphasis", "31", "31", True,
        "The class has 17 boys and 14 girls, 17 + 14 = 31. The answer is *31*.",
    ),
    Case(
        "parenthetical with an equation", "20", "20", True,
        "Let x be the small boxes: 4x = 20, so x = 5, and there are 20 large boxes. The "
        "answer is 20 (where x = 5)",
    ),
    Case(
        "parenthetical with signs", "2500", "2500", True,
        "Revenue is 9000 and costs are 6500, so the shop made 9000 - 6500 = 2500. The "
        "answer is 2500 (profit = 2500, loss = -2500)",
    ),
    Case(
        "computation on the answer line", "58", "58", True,
        "Jo had 96 stickers and gave 38 to her brother.\nThe answer is 96 - 38 = 58 "
        "stickers.",
    ),
    Case(
        "variable on the answer line", "5", "5", True,
        "Solving 3y + 4 = 19 gives 3y = 15. The answer is y = 5.",
    ),
    Case(
        "'N/A' in braces is no answer", "7", None, False,
        "The problem does not say how many buses there are. The answer is {N/A}.",
    ),
    Case(
        "infinity is no answer", "12", None, False,
        "The speed grows without bound as the time shrinks. The answer is $\\infty$.",
    ),
    Case(
        "letters in a fraction are no answer", "3", None, False,
        "Without the count I can only write \\boxed{\\frac{N}{A}}",
    ),
    Case(
        "bold boxed final answer", "84", "84", True,
        "The garden is 12 m by 7 m, so its area is 12 * 7 = 84 square metres.\n\n**Final "
        "Answer:** $\\boxed{84}$",
    ),
]

MULTIPLE_CHOICE = [
    Case(
        "bold letter", "B", "B", True,
        "Rainforests get heavy rain all year and hold most land species.\nThe answer is "
        "**B**.",
        ["tundra", "rainforest", "desert"],
    ),
    Case(
        "bold label", "D", "D", True,
        "Deserts receive under 250 mm of rain a year, which fits.\n\n**Answer:** D",
        BIOMES,
    ),
    Case(
        "quoted letter", "D", "D", True,
        'Only a desert matches "very little rainfall". The answer is "D".',
        BIOMES,
    ),
    Case(
        "option text starting with 'A'", "B", "B", True,
        "Permafrost, lichens and no trees describe a cold plain. The answer is A tundra.",
        BIOMES,
    ),
    Case(
        "option text is not letter A", "A", "B", False,
        "Permafrost, lichens and no trees describe a cold plain. The answer is A tundra.",
        BIOMES,
    ),
    Case(
        "gold given as option text", "A school notebook", "B", True,
        "Lined pages bound together hold lecture notes. The answer is A school notebook.",
        SUPPLIES,
    ),
    Case(
        "option text against another gold", "A", "B", False,
        "Lined pages bound together hold lecture notes. The answer is A school notebook.",
        SUPPLIES,
    ),
    Case(
        "two letters name no single option", "B", None, False,
        "Both the whale and the bat feed milk to their young. The answer is B and D.",
        ANIMALS,
    ),
    Case(
        "letters joined by a comma", "D", None, False,
        "Whales and bats are both mammals. The answer is B, D.",
        ANIMALS,
    ),
    Case(
        "letter then 'because'", "B", "B", True,
        "Copper carries current in household wires. The answer is B, because copper "
        "conducts best.",
        MATERIALS,
    ),
    Case(
        "letter A then 'because'", "A", "A", True,
        "Rubber does not let current through. The answer is A because rubber is an "
        "insulator.",
        MATERIALS,
    ),
    Case(
        "option text without a letter", "B", "B", True,
        "Only metals are drawn to a magnet here. The answer is copper.",
        MATERIALS,
    ),
    Case(
        "bold option text", "C", "C", True,
        "Grasses with scattered trees and a dry season make a savanna. The answer is **a "
        "savanna**.",
        BIOMES,
    ),
    Case(
        "negated letter, then stated", "C", "C", True,
        "The answer is not A, since rubber stretches back. Glass shatters, so the answer is "
        "C.",
        MATERIALS,
    ),
    Case(
        "retracted letter, then stated", "D", "B", False,
        "The answer is D. Wait, that's wrong: mercury is a liquid. The answer is B.",
        MATERIALS,
    ),
    Case(
        "retracted letter, nothing else", "A", None, False,
        "The answer is A was incorrect; rubber blocks the current instead of carrying it.",
        MATERIALS,
    ),
    Case(
        "parenthesised letter", "C", "C", True,
        "Friction turns motion into heat, as when you rub your hands. The answer is (C).",
        ["light", "sound", "heat"],
    ),
    Case(
        "option word", "C", "C", True,
        "Sound travels fastest through solids like steel. The correct answer is option C.",
        ["air", "water", "steel"],
    ),
    Case(
        "number of an option", "B", "B", True,
        "The train covers 6 km a minute for 4 minutes: 6 * 4 = 24 km. The answer is 24.",
        TRAIN,
    ),
    Case(
        "boxed letter", "B", "B", True,
        "Plants release oxygen during photosynthesis.\n\\boxed{B}",
        ["nitrogen", "oxygen"],
    ),
    Case(
        "lower-case letter", "B", "B", True,
        "A whale breathes air through a blowhole. the answer is b)",
        ANIMALS,
    ),
    Case(
        "letter beyond the options", "A", None, False,
        "None of these fit, so I pick another. The answer is (E).",
        ANIMALS,
    ),
]

YES_NO = [
    Case(
        "opening 'No,'", "no", "no", True,
        "No, because penguins live in the Southern Hemisphere and polar bears in the "
        "Arctic, so they never meet in the wild.",
    ),
    Case(
        "opening 'Yes.'", "True", "yes", True,
        "Yes. The Great Wall runs for thousands of kilometres, so walking it takes months.",
    ),
    Case(
        "opening verdict, wrong", "yes", "no", False,
        "No. Honey spoils within a year once the jar is opened.",
    ),
    Case(
        "opening bold verdict", "yes", "yes", True,
        "**Yes**, a bat is a mammal: it has fur and feeds its young milk.",
    ),
    Case(
        "bold answer", "False", "no", True,
        "Mount Everest is taller than K2 by about 240 m.\nThe answer is **False**.",
    ),
    Case(
        "quoted answer", "yes", "yes", True,
        'Venus spins the other way round from Earth. The answer is "True".',
    ),
    Case(
        "bold label", "yes", "yes", True,
        "Sharks have no bones, only cartilage.\n\n**Answer:** Yes",
    ),
    Case(
        "retracted answer", "yes", None, False,
        "The answer is True is incorrect, since a goldfish cannot live in sea water.",
    ),
    Case(
        "negated answer", "yes", None, False,
        "The answer is not True. Octopuses have three hearts, but that was not asked.",
    ),
    Case(
        "'No one' is no verdict", "no", "no", True,
        "No one can see the Great Wall from the Moon with the naked eye; it is too narrow. "
        "The answer is False.",
    ),
    Case(
        "'No one' alone", "no", None, False,
        "No one knows exactly how many ants are alive today.",
    ),
    Case(
        "hedge", "yes", None, False,
        "Yes and no: it depends on which calendar you use.",
    ),
    Case(
        "corrected answer", "yes", "yes", True,
        "Tomatoes grow from flowers. The answer is False. Actually, that's wrong: they are "
        "fruits. The answer is True.",
    ),
    Case(
        "doubted answer", "yes", None, False,
        "Bananas are berries botanically. The answer is True? I am not certain of it.",
    ),
    Case(
        "answer line without 'the'", "no", "no", True,
        "A koala eats eucalyptus leaves, not meat. Therefore answer is False",
    ),
    Case(
        "plain answer line", "yes", "yes", True,
        "A leap year has 366 days, so February has 29 of them.\nThe answer is: Yes.",
    ),
]
# fmt: on

TABLE = [("math", case) for case in MATH]
TABLE += [("multiple_choice", case) for case in MULTIPLE_CHOICE]
TABLE += [("yes_no", case) for case in YES_NO]


def test_the_table_is_large_and_balanced():
    assert len(TABLE) >= 60
    for cases in (MATH, MULTIPLE_CHOICE, YES_NO):
        assert {case.correct for case in cases} == {True, False}
        assert any(case.predicted is None for case in cases)


@pytest.mark.parametrize(("task", "case"), TABLE, ids=[f"{t}: {c.why}" for t, c in TABLE])
def test_prediction_and_verdict(task, case):
    gold = normalize_gold(case.gold, task, case.choices)
    predicted = extract_answer(case.output, task, case.choices)

    assert predicted == case.predicted
    assert is_correct(predicted, gold, task) is case.correct


@pytest.mark.parametrize("task", ["math", "multiple_choice", "yes_no"])
def test_verify_keeps_exactly_the_rows_judged_right(task):
    cases = [case for t, case in TABLE if t == task]
    traces = [
        {
            "config": "cot-L3",
            "problem_id": f"p{i}",
            "raw_output": case.output,
            "finish_reason": "stop",
            "answer": normalize_gold(case.gold, task, case.choices),
            "choices": case.choices,
        }
        for i, case in enumerate(cases)
    ]
    rows = verify(traces, task, list(DROP_REASONS))

    assert [row["predicted_answer"] for row in rows] == [case.predicted for case in cases]
    expected = [
        None if case.correct else "unparseable" if case.predicted is None else "wrong"
        for case in cases
    ]
    assert [row["drop_reason"] for row in rows] == expected


# ---------------------------------------------------------------------------------------------
# gold answers: what a source may give, and what is a source error


@pytest.mark.parametrize(
    ("raw", "task", "choices"),
    [
        ("N/A", "math", None),
        ("none", "math", None),
        ("?", "math", None),
        ("unknown", "math", None),
        ("nan", "math", None),
        ("inf", "math", None),
        ("-inf", "math", None),
        ("{}", "math", None),
        ("\\infty", "math", None),
        ("\\frac{N}{A}", "math", None),
        ("twelve", "math", None),
        ("12 apples", "math", None),
        ("#### unknown", "math", None),
        ("A tundra", "multiple_choice", None),
        ("A tundra", "multiple_choice", ["a desert", "a savanna"]),
        ("B and D", "multiple_choice", ANIMALS),
        ("unknown", "yes_no", None),
    ],
)
def test_junk_gold_is_an_error(raw, task, choices):
    message = f"cannot normalise gold answer {raw!r} for task {task!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        normalize_gold(raw, task, choices)


@pytest.mark.parametrize(
    ("raw", "gold"),
    [
        ("192,000,000", "192000000"),
        ("**42**", "42"),
        ('"$7.50"', "7.5"),
        ("25%", "25"),
        ("-3/8", "-3/8"),
        ("\\frac{5}{6}", "\\frac{5}{6}"),
        ("2\\sqrt{3}", "2\\sqrt{3}"),
        ("3x + 2", "3x + 2"),
        ("\\pi", "\\pi"),
    ],
)
def test_valid_math_golds(raw, gold):
    assert normalize_gold(raw, "math") == gold


@pytest.mark.parametrize("junk", ["N/A", "{N/A}", "\\infty", "\\frac{N}{A}", "none", "nan"])
def test_junk_never_matches_even_itself(junk):
    """A junk value passed straight to is_correct (no normalize_gold) is not a match either."""
    assert not is_correct(junk, junk, "math")
    assert not is_correct(junk, "5", "math")


@pytest.mark.parametrize(
    ("raw", "choices", "gold"),
    [
        ("A tundra", BIOMES, "B"),
        ("a savanna", BIOMES, "C"),
        ("**D**", BIOMES, "D"),
        ('"B"', BIOMES, "B"),
        ("A school notebook", SUPPLIES, "B"),
        ("A", SUPPLIES, "A"),
        ("(A) a pencil case", SUPPLIES, "A"),
    ],
)
def test_multiple_choice_gold_as_letter_or_option_text(raw, choices, gold):
    assert normalize_gold(raw, "multiple_choice", choices) == gold
