"""Verification: cleaning, step and token counts, degenerate loops, and every drop reason."""

from __future__ import annotations

import itertools
import json
from statistics import mean

import pytest

from factory.recipe import DROP_REASONS
from factory.verify import clean_completion, count_steps, count_tokens, is_repetitive, verify

AQUA = ["A)21", "B)21.5", "C)22"]
LOOP = "The answer is 4.\n\n" * 20
SOUND = "There are 2 + 2 = 4 apples.\nThe answer is 4."


# ---------------------------------------------------------------------------------------------
# clean_completion


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (
            "   \n\t There are 4 apples.\nThe answer is 4.  \n",
            "There are 4 apples.\nThe answer is 4.",
        ),
        (
            "Birds: 2<br>Storks: 6<br />Total: 8<BR/>The answer is 8",
            "Birds: 2\nStorks: 6\nTotal: 8\nThe answer is 8",
        ),
        (
            "<Solution Path>Genghis Khan had many heirs. The answer is True",
            "Genghis Khan had many heirs. The answer is True",
        ),
        (
            "<explanation>It is 5.</explanation> The answer is <answer>5</answer>",
            "It is 5. The answer is 5",
        ),
        (
            "Snakes hiding: 95 - 64 = 31<Final Answer> The answer is 31",
            "Snakes hiding: 95 - 64 = 31 The answer is 31",
        ),
        ("36 + 17 = 53 inches</math>The answer is 53", "36 + 17 = 53 inchesThe answer is 53"),
        ("<Rephrase and expand the given question>How many?", "How many?"),
    ],
)
def test_clean_completion_removes_tags_and_whitespace(raw, clean):
    assert clean_completion(raw) == clean


@pytest.mark.parametrize(
    "text",
    [
        "If x < 5 and y > 3, then x + y < 5 + y.",
        "Since 356 > 308 and 2 < 3, the answer is True",
        "x<y and z>w, so 2<3",
        "The time is <3570 minutes> in total.",
        "Compare a <b> c, then <The answer is 24>",
    ],
)
def test_clean_completion_leaves_comparisons_alone(text):
    assert clean_completion(text) == text


# ---------------------------------------------------------------------------------------------
# count_steps


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("Step 1: add 2 and 3.\nStep 2: that gives 5.\nThe answer is 5.", 2),
        ("There are 290 bananas. Each group has 290 / 2 = 145. The answer is 145.", 2),
        ("The price is 2.50 dollars. Then 3.5 more.\nThe answer is 6", 2),  # decimals are no ends
        ("Is it big? Yes! So it fits; it is 5.\nThe answer is 5", 4),
        ("First add.\n\n\nThen subtract.", 2),
        ("First add.   Then subtract", 2),  # a line break flattened to spaces
        ("Step 1: 26.Step 2: add 4. The answer is 30", 2),  # "26.Step 2"
        ("So he has 26Number of apples is 3. The answer is 3", 2),  # "26Number of"
        ("Step 1 add 2 Step 2 add 3", 2),
        ("I think the answer is 4.\nCheck: 2 + 2 = 4.\nThe answer is 4.", 2),  # only the last line
        ("Add 2 and 2. The final answer is 4", 1),
        ("The answer is 5.", 0),  # answer-only
        ("The answer is True", 0),
        ("  ", 0),
        ("", 0),
    ],
)
def test_count_steps(text, steps):
    assert count_steps(text) == steps


@pytest.mark.parametrize(
    "forms",
    [
        # numbered items with and without the line break the paper's files lost
        (
            "1. Add 2 and 3.\n2. That gives 5.\n3. Check it.",
            "1. Add 2 and 3. 2. That gives 5. 3. Check it.",
            "1. Add 2 and 3.2. That gives 5.3. Check it.",
        ),
        ("The total is 290.\n2. Note that we split.", "The total is 290.2. Note that we split."),
        ("We get 26.\nStep 2: add.", "We get 26.Step 2: add."),
        ("He has 26\nNumber of apples is 3.", "He has 26Number of apples is 3."),
    ],
)
def test_count_steps_run_together_forms_count_like_line_breaks(forms):
    assert len({count_steps(text) for text in forms}) == 1


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("1. Add 2 and 3.\n2. That gives 5.\n3. Check it.\nThe answer is 5.", 3),
        ("1. Add 2 and 3\n2. That gives 5\nThe answer is 5", 2),
        ("The total is 290.2. Note that we split. The answer is 145", 2),  # "290.2. Note"
    ],
)
def test_count_steps_numbered_lines(text, steps):
    assert count_steps(text) == steps


def test_count_steps_numbered_with_parentheses():
    assert count_steps("1) Add 2 and 3.\n2) That gives 5.\nThe answer is 5.") == 2


# ---------------------------------------------------------------------------------------------
# count_tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("The answer is 145.", 5),
        ("It's 3+4=7!", 9),  # It ' s 3 + 4 = 7 !
        ("2.50 dollars", 4),
        ("  spaced \n\n out  ", 2),
        ("", 0),
    ],
)
def test_count_tokens(text, tokens):
    assert count_tokens(text) == tokens


def test_paper_granularity_levels_measure_as_increasing(shared_data):
    folder = shared_data / "paper-cot" / "svamp"
    steps, tokens = {}, {}
    for level in range(1, 7):
        rows = json.loads((folder / f"SVAMP_ChatGPT_level{level}_ranked.json").read_text())
        completions = [clean_completion(row["output"]) for row in rows]
        steps[level] = mean(map(count_steps, completions))
        tokens[level] = mean(map(count_tokens, completions))

    assert [tokens[level] for level in range(1, 7)] == sorted(tokens.values())
    assert steps[1] < steps[3] < steps[6]
    assert steps[1] > 1


# ---------------------------------------------------------------------------------------------
# is_repetitive

CAMPERS = (
    "The number of campers who went rowing in the morning is 35. "
    "The number of campers who went rowing in the afternoon is 27. "
    "The number of campers who went rowing in the evening is 10. "
    "So the total number of campers who went rowing in the whole day is 35 + 27 + 10 = 72. "
    "The answer is 72."
)
SENTENCE = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat. "


def test_degenerate_loop_is_repetitive():
    assert is_repetitive(LOOP)
    assert is_repetitive(clean_completion(LOOP))
    assert is_repetitive("Let me compute. " + "2 + 2 is 4 and 4 + 0 is 4 so " * 12)


def test_a_long_span_recurring_three_times_is_repetitive_twice_is_not():
    assert not is_repetitive(SENTENCE * 2)  # a restated question
    assert is_repetitive(SENTENCE * 3)


def test_recurring_short_phrases_are_not_repetitive():
    assert not is_repetitive(CAMPERS)
    assert not is_repetitive(SOUND)
    assert not is_repetitive("")


def test_real_long_rationales_are_not_repetitive(shared_data):
    path = shared_data / "paper-cot" / "svamp" / "0_SVAMP_chatgpt_level5BSM.json"
    outputs = [row["output"] for row in json.loads(path.read_text())]
    flagged = [text for text in outputs if is_repetitive(clean_completion(text))]

    assert len(outputs) > 600
    assert mean(len(text.split()) for text in outputs) > 100  # long, phrase-recycling rationales
    assert len(flagged) < 0.01 * len(outputs), flagged[:3]


# ---------------------------------------------------------------------------------------------
# verify


def trace(
    raw_output: str = SOUND,
    answer: str = "4",
    *,
    config: str = "cot-L1",
    problem_id: str = "p1",
    finish_reason: str = "stop",
    choices: list[str] | None = None,
    **extra,
) -> dict:
    return {
        "config": config,
        "problem_id": problem_id,
        "raw_output": raw_output,
        "finish_reason": finish_reason,
        "answer": answer,
        "choices": choices,
        **extra,
    }


def reasons(traces: list[dict], task: str = "math", drop=DROP_REASONS) -> list[str | None]:
    return [row["drop_reason"] for row in verify(traces, task, list(drop))]


def test_verify_fields_of_a_kept_trace():
    raw = "  <Solution Path>There are 2 + 2 = 4 apples.<br>The answer is 4.  "
    source = trace(raw, teacher="gpt-4o", sample=0)
    (row,) = verify([source], "math", list(DROP_REASONS))

    assert row == {
        **source,  # every input key kept, raw_output untouched
        "completion": "There are 2 + 2 = 4 apples.\nThe answer is 4.",
        "predicted_answer": "4",
        "correct": True,
        "num_steps": 1,
        "num_tokens": 14,
        "drop_reason": None,
    }
    assert source == trace(raw, teacher="gpt-4o", sample=0)  # the input is not modified


def test_verify_yes_no_and_multiple_choice():
    rows = verify(
        [
            trace("Water is wet. The answer is True", "yes"),
            trace("It is dry. The answer is False", "yes"),
        ],
        "yes_no",
        list(DROP_REASONS),
    )
    assert [(r["predicted_answer"], r["correct"], r["drop_reason"]) for r in rows] == [
        ("yes", True, None),
        ("no", False, "wrong"),
    ]

    rows = verify(
        [
            trace("43 / 2 = 21.5. The answer is B", "B", choices=AQUA),
            trace("The answer is 22", "B", choices=AQUA),
        ],
        "multiple_choice",
        list(DROP_REASONS),
    )
    assert [(r["predicted_answer"], r["drop_reason"]) for r in rows] == [
        ("B", None),
        ("C", "wrong"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "task", "reason"),
    [
        ({"finish_reason": "length"}, "math", "truncated"),
        ({"raw_output": "I am not sure how to solve this."}, "math", "unparseable"),
        ({"raw_output": "Maybe, it depends.", "answer": "yes"}, "yes_no", "unparseable"),
        ({"raw_output": "2 + 3 = 5. The answer is 5."}, "math", "wrong"),
        ({"raw_output": "Let me think. " * 4 + LOOP}, "math", "repetitive"),
    ],
)
def test_each_drop_reason(kwargs, task, reason):
    (row,) = verify([trace(**kwargs)], task, list(DROP_REASONS))
    assert row["drop_reason"] == reason
    assert row["correct"] is (reason in ("truncated", "repetitive"))


def test_duplicate_is_the_same_normalised_completion_for_the_same_config_and_problem():
    traces = [
        trace("There are 2 + 2 = 4 apples.\nThe answer is 4."),
        trace("  <explanation>there are 2 + 2 = 4   APPLES.</explanation>\n\nThe answer is 4. "),
        trace(SOUND, config="cot-L3"),  # another config
        trace(SOUND, problem_id="p2"),  # another problem
        trace("Two and two make 4 apples.\nThe answer is 4."),  # another text
        trace(SOUND),
    ]
    assert reasons(traces) == [None, "duplicate", None, None, None, "duplicate"]


def test_a_dropped_trace_does_not_make_its_twin_a_duplicate():
    traces = [trace(SOUND, finish_reason="length"), trace(SOUND), trace(SOUND)]
    assert reasons(traces) == ["truncated", None, "duplicate"]


def test_duplicates_kept_when_not_dropped():
    rows = verify([trace(SOUND), trace(SOUND)], "math", ["wrong"])
    assert [r["drop_reason"] for r in rows] == [None, None]
    assert rows[0]["completion"] == rows[1]["completion"] == SOUND


# A trace for which truncated, unparseable, wrong and repetitive all hold.
EVERY_FLAW = trace("we go round and round and round again " * 12, finish_reason="length")


@pytest.mark.parametrize("drop", list(itertools.permutations(DROP_REASONS)))
def test_precedence_does_not_depend_on_the_order_of_drop(drop):
    assert reasons([EVERY_FLAW], drop=drop) == ["truncated"]


@pytest.mark.parametrize(
    ("drop", "reason"),
    [
        (["duplicate", "repetitive", "wrong", "unparseable", "truncated"], "truncated"),
        (["duplicate", "repetitive", "wrong", "unparseable"], "unparseable"),
        (["repetitive", "duplicate", "wrong"], "wrong"),
        (["duplicate", "repetitive"], "repetitive"),
        (["duplicate"], None),
        ([], None),
    ],
)
def test_precedence_truncated_unparseable_wrong_repetitive(drop, reason):
    (row,) = verify([EVERY_FLAW], "math", drop)
    assert row["drop_reason"] == reason
    assert row["correct"] is False
    assert row["predicted_answer"] is None


@pytest.mark.parametrize(
    ("drop", "reason"),
    [(["duplicate", "truncated"], "truncated"), (["repetitive", "duplicate"], "duplicate")],
)
def test_precedence_over_duplicate(drop, reason):
    first = trace(SOUND)
    twin = trace(SOUND, finish_reason="length")
    assert reasons([first, twin], drop=drop) == [None, reason]


def test_reasons_not_dropped_keep_the_row_with_every_field():
    traces = [
        trace("2 + 3 = 5. The answer is 5.", problem_id="wrong"),
        trace(SOUND, problem_id="truncated", finish_reason="length"),
        trace("No idea at all.", problem_id="unparseable"),
        trace(LOOP, problem_id="loop"),
    ]
    rows = verify(traces, "math", [])

    assert [r["problem_id"] for r in rows] == ["wrong", "truncated", "unparseable", "loop"]
    assert all(r["drop_reason"] is None for r in rows)
    assert [r["correct"] for r in rows] == [False, True, False, True]
    assert [r["predicted_answer"] for r in rows] == ["5", "4", None, "4"]
    assert [r["num_steps"] for r in rows] == [1, 1, 1, count_steps(LOOP.strip())]
    assert [r["num_tokens"] for r in rows] == [11, 14, 5, 100]
    assert [r["completion"] for r in rows] == [
        "2 + 3 = 5. The answer is 5.",
        SOUND,
        "No idea at all.",
        LOOP.strip(),
    ]


def test_verify_keeps_the_order_of_traces():
    traces = [
        trace(f"{n} + 0 = {n}. The answer is {n}.", str(n % 3), problem_id=f"p{n}")
        for n in range(12)
    ]
    rows = verify(traces, "math", list(DROP_REASONS))

    assert [r["problem_id"] for r in rows] == [f"p{n}" for n in range(12)]
    assert [r["drop_reason"] for r in rows] == [None if n < 3 else "wrong" for n in range(12)]
    assert verify([], "math", list(DROP_REASONS)) == []
