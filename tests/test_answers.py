"""Answer extraction: hand cases for every rule, then the paper's released teacher CoTs."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from factory import answers
from factory.answers import (
    extract_answer,
    final_answer_line,
    is_correct,
    normalize_gold,
    split_reference,
)

AQUA = ["A)21", "B)21.5", "C)22"]


# ---------------------------------------------------------------------------------------------
# normalize_gold / split_reference


@pytest.mark.parametrize(
    ("raw", "gold"),
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"),
        ("#### 1,234", "1234"),
        ("$5", "5"),
        ("145.0", "145"),
        ("2.50", "2.5"),
        ("  -7 ", "-7"),
        ("0.75", "0.75"),
        ("3/4", "3/4"),
        ("-1/2", "-1/2"),
        (r"\frac{3}{4}", r"\frac{3}{4}"),
        ("145.", "145"),
        (145, "145"),
    ],
)
def test_normalize_gold_math(raw, gold):
    assert normalize_gold(raw, "math") == gold


@pytest.mark.parametrize(
    ("raw", "choices", "gold"),
    [
        ("b", None, "B"),
        ("(B)", None, "B"),
        ("B)", None, "B"),
        ("B) 21.5", None, "B"),
        ("C", AQUA, "C"),
        ("21", AQUA, "A"),
        ("21.5", AQUA, "B"),
        ("A) 21", ["A) 21", "B) 21.5"], "A"),
        ("blue", ["red", "blue", "green"], "B"),
    ],
)
def test_normalize_gold_multiple_choice(raw, choices, gold):
    assert normalize_gold(raw, "multiple_choice", choices) == gold


@pytest.mark.parametrize(
    ("raw", "gold"),
    [
        ("True", "yes"),
        ("yes", "yes"),
        ("Yes.", "yes"),
        ("true", "yes"),
        ("False", "no"),
        ("no", "no"),
        (" NO ", "no"),
    ],
)
def test_normalize_gold_yes_no(raw, gold):
    assert normalize_gold(raw, "yes_no") == gold


@pytest.mark.parametrize(
    ("raw", "task", "choices"),
    [
        ("", "math", None),
        ("   ", "math", None),
        ("#### ", "math", None),
        ("maybe", "yes_no", None),
        ("", "yes_no", None),
        ("F", "multiple_choice", AQUA),
        ("the moon", "multiple_choice", AQUA),
        ("the moon", "multiple_choice", None),
    ],
)
def test_normalize_gold_rejects_what_it_cannot_read(raw, task, choices):
    with pytest.raises(ValueError, match="cannot normalise gold answer"):
        normalize_gold(raw, task, choices)


def test_unknown_task_type_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown task type 'essay'"):
        normalize_gold("5", "essay")
    with pytest.raises(ValueError, match="unknown task type 'essay'"):
        extract_answer("The answer is 5", "essay")


def test_split_reference_strips_calculator_marks_and_splits_the_final_answer():
    field_ = "He sold 48/2 = <<48/2=24>>24.\nIn all 48+24 = <<48+24=72>>72.\n#### 72"
    assert split_reference(field_) == ("He sold 48/2 = 24.\nIn all 48+24 = 72.", "72")
    assert split_reference("just 72") == (None, "just 72")


# ---------------------------------------------------------------------------------------------
# extract_answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("290 / 2 = 145. The answer is 145", "145"),
        ("The answer is 145 bananas.", "145"),
        ("The answer is 145.0", "145"),
        ("The answer is $1,234.", "1234"),
        ("The answer is -3.", "-3"),
        ("The answer is −3", "-3"),
        ("The answer is 0.50", "0.5"),
        ("The answer is 3/4", "3/4"),
        ("The answer is 14.5 dollars.", "14.5"),
        ("The answer is: 12", "12"),
        ("the final answer is 7", "7"),
        ("Answer: 42", "42"),
        ("The answer is 81 - 60 = 21", "21"),
        ("The answer is <answer> 16", "16"),
        ("The answer is 145. Next problem: x = 3", "145"),
        (r"The answer is $\frac{3}{4}$.", r"\frac{3}{4}"),
        (r"The answer is \boxed{5\text{ apples}}", "5"),
        (r"so \boxed{\frac{1}{\sqrt{2}}} is it", r"\frac{1}{\sqrt{2}}"),
        (r"First \boxed{3}, then \boxed{4}", "4"),
        ("The answer is 5. Checking again, the answer is 6.", "6"),
        ("The answer is 34.\nThe answer is 24", "24"),
        ("The answer is 2. I hope the answer is clear.", "2"),
        ("The answer is not 26, the answer is 12", "12"),
        ("The answer is 13 is incorrect, the correct answer is 68.", "68"),
        ("20 - 5 = 15 dollars in change.", "15"),
        ("23 - 13 = 10 meters after the 3rd turn.", "10"),
        ("It costs $200 / 50 = $4.00 per trip.", "4"),
        ("Nothing numeric here.", None),
        ("", None),
    ],
)
def test_extract_answer_math(text, answer):
    assert extract_answer(text, "math") == answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("The answer is (C)", "C"),
        ("The answer is C) 22", "C"),
        ("The answer is: c", "C"),
        ("The answer is B.", "B"),
        ("The answer is option A", "A"),
        ("The answer is 21.5", "B"),
        ("The answer is 22 apples.", "C"),
        (r"\boxed{\text{(A)}}", "A"),
        ("The answer is (F)", None),
        ("I am not sure which one, maybe 23.", None),
        ("The answer is a mystery.", None),
    ],
)
def test_extract_answer_multiple_choice(text, answer):
    assert extract_answer(text, "multiple_choice", AQUA) == answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Genghis Khan had many children.\n The answer is True", "yes"),
        ("The answer is False", "no"),
        ("The answer is: Yes.", "yes"),
        ("the answer is no", "no"),
        ("Therefore,they had the same pistol.TheanswerisTrue", "yes"),
        ("do.not.qualify.The.answer.is.False", "no"),
        ("The answer is <answer>True", "yes"),
        (r"\boxed{\text{No}}", "no"),
        ("The answer is not False.", None),
        ("The answer is Undefined", None),
        ("Therefore, the statement is False.", None),
        ("", None),
    ],
)
def test_extract_answer_yes_no(text, answer):
    assert extract_answer(text, "yes_no") == answer


@pytest.mark.parametrize(
    ("gold", "task", "choices"),
    [
        ("145", "math", None),
        ("-2.5", "math", None),
        (r"\frac{3}{4}", "math", None),
        ("B", "multiple_choice", AQUA),
        ("yes", "yes_no", None),
        ("no", "yes_no", None),
    ],
)
def test_final_answer_line_round_trips_through_the_extractor(gold, task, choices):
    line = final_answer_line(gold)
    assert line == f"The answer is {gold}."
    assert extract_answer("Some reasoning with 99 in it.\n" + line, task, choices) == gold


# ---------------------------------------------------------------------------------------------
# is_correct


@pytest.mark.parametrize(
    ("predicted", "gold", "correct"),
    [
        ("145", "145", True),
        ("145.0", "145", True),
        ("1,234", "1234", True),
        ("0.75", "3/4", True),
        ("0.3333333", "1/3", True),
        ("144", "145", False),
        ("-3", "3", False),
        ("3/4", r"\frac{3}{4}", True),
        (r"\frac{3}{4}", "0.75", True),
        (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", True),
        (r"\frac{1}{2}", r"\frac{3}{4}", False),
        (r"\frac{", "1", False),
        (None, "145", False),
    ],
)
def test_is_correct_math(predicted, gold, correct):
    assert is_correct(predicted, gold, "math") is correct


def test_is_correct_choices_and_yes_no_are_exact():
    assert is_correct("B", "B", "multiple_choice")
    assert not is_correct("C", "B", "multiple_choice")
    assert is_correct("yes", "yes", "yes_no")
    assert not is_correct("no", "yes", "yes_no")
    assert not is_correct(None, "yes", "yes_no")


def test_is_correct_leaves_math_verify_alone_when_numbers_decide(monkeypatch):
    def fail(gold, predicted):
        raise AssertionError(f"math-verify called for {gold!r} vs {predicted!r}")

    monkeypatch.setattr(answers, "_math_verify_equal", fail)
    assert is_correct("145.0", "145", "math")
    assert is_correct("0.75", "3/4", "math")
    assert not is_correct("144", "145", "math")


def test_is_correct_works_off_the_main_thread():
    """math-verify's default timeout uses signal.alarm, which raises outside the main thread."""
    pairs = [("3/4", r"\frac{3}{4}"), (r"\frac{1}{2}", "0.5"), ("2", r"\frac{3}{4}")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda pair: is_correct(*pair, "math"), pairs))
    assert results == [True, True, False]


# ---------------------------------------------------------------------------------------------
# Real data: the paper's teacher CoTs against the gold answers


def _levels(pattern: str, accuracies: list[float]) -> dict[str, float]:
    """{file name: measured accuracy} for levels 1, 2, ... of one teacher."""
    return {pattern.format(level): acc for level, acc in enumerate(accuracies, start=1)}


# Teacher accuracy against gold as measured on these files (the paper kept wrong teacher answers).
SVAMP_ACCURACY = {
    **_levels("SVAMP_ChatGPT_level{}_ranked.json", [0.987, 0.986, 0.984, 0.990, 0.990, 0.990]),
    **_levels("SVAMP_gemini_level{}_ranked.json", [0.997, 0.991, 0.990, 0.983, 0.970, 0.974]),
    **_levels("SVAMP_llama_level{}_ranked.json", [0.996, 0.994, 0.996, 0.999]),
    "0_SVAMP_chatgpt_level3BSM.json": 0.977,
    "0_SVAMP_chatgpt_level3RaR.json": 0.973,
    "0_SVAMP_chatgpt_level3SYM.json": 0.981,
    "0_SVAMP_chatgpt_level5BSM.json": 0.984,
    "0_SVAMP_chatgpt_level5RaR.json": 0.983,
    "0_SVAMP_chatgpt_level5SYM.json": 0.984,
}
GSM8K_ACCURACY = {
    **_levels("gsm8k_gemini_level{}_ranked.json", [0.986, 0.952]),
    **_levels("gsm8k_llama_level{}_ranked.json", [0.997, 0.999]),
}
STRATEGYQA_ACCURACY = {
    **_levels(
        "strategyQA_chatgpt_level_{}_ranked.json", [0.960, 0.957, 0.962, 0.953, 0.949, 0.954]
    ),
    **_levels("stqa_gemini_level{}_ranked.json", [0.983, 0.985, 0.989, 0.988, 0.979, 0.976]),
    **_levels("stqa_llama_level{}_ranked.json", [0.990, 0.991, 0.987, 0.989, 0.989, 0.988]),
}
TOLERANCE = 0.01
_CLEAN_NUMBER_TAIL = re.compile(r"the answer is (-?\d[\d,]*(?:\.\d+)?)\.?\s*$", re.IGNORECASE)
_CLEAN_BOOL_TAIL = re.compile(r"the answer is (true|false)\.?\s*$", re.IGNORECASE)
_ANY_BOOL_ANSWER = re.compile(r"the answer is\W*(true|false)\b", re.IGNORECASE)


@dataclass
class Score:
    """Extraction and accuracy of one teacher file against gold answers matched by question."""

    rows: int = 0
    unmatched: list[str] = field(default_factory=list)
    missing: list[tuple[int, str]] = field(default_factory=list)  # (row, output tail)
    correct: int = 0

    @property
    def matched(self) -> int:
        return self.rows - len(self.unmatched)

    @property
    def extraction_rate(self) -> float:
        return 1 - len(self.missing) / self.matched

    @property
    def accuracy(self) -> float:
        return self.correct / self.matched


def _key(question: str) -> str:
    return " ".join(question.split())


def _teacher_rows(shared_data: Path, folder: str, name: str) -> list[dict]:
    path = shared_data / "paper-cot" / folder / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return json.loads(path.read_text(encoding="utf-8"))


def _score(rows: list[dict], gold_by_question: dict[str, str], task: str) -> Score:
    score = Score(rows=len(rows))
    for index, row in enumerate(rows):
        gold = gold_by_question.get(_key(row["instruction"]))
        if gold is None:
            score.unmatched.append(row["instruction"])
            continue
        predicted = extract_answer(row["output"], task)
        if predicted is None:
            score.missing.append((index, row["output"][-100:]))
        score.correct += is_correct(predicted, gold, task)
    print(f"extraction {score.extraction_rate:.4f} accuracy {score.accuracy:.4f}", end=" ")
    return score


def _assert_clean_tails_extracted(rows: list[dict], pattern: re.Pattern, task: str) -> int:
    """Every output ending in a plain 'The answer is X' yields exactly X."""
    checked = 0
    for row in rows:
        tail = pattern.search(row["output"])
        if tail:
            assert extract_answer(row["output"], task) == normalize_gold(tail.group(1), task)
            checked += 1
    return checked


@pytest.fixture(scope="module")
def svamp_gold(shared_data: Path) -> dict[str, str]:
    lines = (shared_data / "svamp" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    return {_key(row["question"]): normalize_gold(row["answer"], "math") for row in rows}


@pytest.fixture(scope="module")
def gsm8k_train(shared_data: Path) -> list[dict]:
    lines = (shared_data / "gsm8k" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def strategyqa_gold(shared_data: Path) -> dict[str, str]:
    rows = _teacher_rows(shared_data, "strategyqa", "strategyQA_onlyans.json")
    return {_key(row["instruction"]): normalize_gold(row["output"], "yes_no") for row in rows}


@pytest.mark.parametrize("name", sorted(SVAMP_ACCURACY))
def test_svamp_teacher_cots(shared_data, svamp_gold, name):
    rows = _teacher_rows(shared_data, "svamp", name)
    score = _score(rows, svamp_gold, "math")
    assert score.unmatched == []
    assert score.missing == []  # every SVAMP teacher output yields an answer
    assert abs(score.accuracy - SVAMP_ACCURACY[name]) <= TOLERANCE
    assert score.accuracy < 1.0  # the paper did not filter wrong teacher answers
    assert _assert_clean_tails_extracted(rows, _CLEAN_NUMBER_TAIL, "math") > 0.9 * len(rows)


def test_svamp_human_rationales_match_gold_exactly(shared_data, svamp_gold):
    """The human file ends in 'The answer is 145.0' against gold '145'."""
    rows = _teacher_rows(shared_data, "svamp", "svamp_human_annotation.json")
    assert all(row["output"].rstrip().endswith(".0") for row in rows[:5])
    score = _score(rows, svamp_gold, "math")
    assert (score.matched, score.missing, score.accuracy) == (700, [], 1.0)


def test_svamp_answer_only_file_agrees_with_gold(shared_data, svamp_gold):
    rows = _teacher_rows(shared_data, "svamp", "SVAMP_only_ans.json")
    assert len(rows) == 700
    for row in rows:
        assert normalize_gold(row["output"], "math") == svamp_gold[_key(row["instruction"])]


@pytest.mark.parametrize("name", sorted(GSM8K_ACCURACY))
def test_gsm8k_teacher_cots(shared_data, gsm8k_train, name):
    gold = {_key(row["question"]): normalize_gold(row["answer"], "math") for row in gsm8k_train}
    rows = _teacher_rows(shared_data, "gsm8k", name)
    score = _score(rows, gold, "math")
    assert len(score.unmatched) == 3  # three questions that are not in GSM8K train
    assert score.missing == []
    assert abs(score.accuracy - GSM8K_ACCURACY[name]) <= TOLERANCE
    assert score.accuracy < 1.0
    assert _assert_clean_tails_extracted(rows, _CLEAN_NUMBER_TAIL, "math") > 0.9 * len(rows)


def test_split_reference_on_real_gsm8k(gsm8k_train):
    found_by_last_number = 0
    for row in gsm8k_train:
        rationale, final = split_reference(row["answer"])
        last_line = row["answer"].splitlines()[-1]
        assert last_line.startswith("####") and final == last_line[4:].strip()
        assert rationale and "<<" not in rationale and ">>" not in rationale
        assert normalize_gold(row["answer"], "math") == normalize_gold(final, "math")
        found_by_last_number += is_correct(
            extract_answer(rationale, "math"), normalize_gold(final, "math"), "math"
        )
    # Human rationales have no answer line: the last-number rule finds the answer in ~97.2%.
    assert found_by_last_number / len(gsm8k_train) >= 0.96


@pytest.mark.parametrize("name", sorted(STRATEGYQA_ACCURACY))
def test_strategyqa_teacher_cots(shared_data, strategyqa_gold, name):
    rows = _teacher_rows(shared_data, "strategyqa", name)
    score = _score(rows, strategyqa_gold, "yes_no")
    assert score.unmatched == []
    # The few misses are outputs that never state 'The answer is True/False' (hedges such as
    # 'the statement is False', 'The answer is Undefined', garbled text, one empty output).
    assert score.extraction_rate >= 0.99
    for index, tail in score.missing:
        assert not _ANY_BOOL_ANSWER.search(rows[index]["output"]), (index, tail)
    assert abs(score.accuracy - STRATEGYQA_ACCURACY[name]) <= TOLERANCE
    assert score.accuracy < 1.0
    assert _assert_clean_tails_extracted(rows, _CLEAN_BOOL_TAIL, "yes_no") > 0.9 * len(rows)


def test_strategyqa_gold_is_true_false(shared_data):
    rows = _teacher_rows(shared_data, "strategyqa", "strategyQA_onlyans.json")
    labels = [normalize_gold(row["output"], "yes_no") for row in rows]
    assert {row["output"] for row in rows} == {"True", "False"}
    assert (labels.count("yes"), labels.count("no")) == (935, 1065)


# ---------------------------------------------------------------------------------------------
# bench/paper_cot_extraction.py: the same measurement, on a few files


def _paper_bench():
    path = Path(__file__).resolve().parents[1] / "bench" / "paper_cot_extraction.py"
    spec = importlib.util.spec_from_file_location("paper_cot_extraction", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("folder", "name", "extracted", "agree"),
    [
        ("svamp", "SVAMP_ChatGPT_level1_ranked.json", 1.0, 0.9871),
        ("svamp", "svamp_human_annotation.json", 1.0, 1.0),
        ("gsm8k", "gsm8k_llama_level1_ranked.json", 1.0, 0.9961),
        ("strategyqa", "stqa_llama_level5_ranked.json", 0.9955, 0.9915),
        ("strategyqa", "strategyQA_onlyans.json", 1.0, 1.0),  # bare 'True'/'False' outputs
    ],
)
def test_paper_cot_extraction_benchmark(shared_data, folder, name, extracted, agree):
    bench = _paper_bench()
    path = shared_data / "paper-cot" / folder / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    score = bench.score_file(path, bench.TASKS[folder], bench.gold_answers(shared_data, folder))

    assert score.extraction_rate >= 0.99
    assert score.extraction_rate == pytest.approx(extracted, abs=0.0005)
    assert score.agreement == pytest.approx(agree, abs=0.0005)
    assert len(score.misses) == score.rows - score.extracted


def test_real_outputs_that_reject_the_gold_are_not_judged_right(shared_data, gsm8k_train):
    """LLaMA-3's GSM8K CoTs sometimes end 'The answer is not 148.' when the gold is 148: when
    that is their last word on the answer, they are wrong, whatever number comes last."""
    gold = {_key(row["question"]): normalize_gold(row["answer"], "math") for row in gsm8k_train}
    rejecting = 0
    for name in ("gsm8k_llama_level1_ranked.json", "gsm8k_llama_level2_ranked.json"):
        for row in _teacher_rows(shared_data, "gsm8k", name):
            answer = gold.get(_key(row["instruction"]))
            stated = re.findall(r"answer is (not )?\$?(\d[\d,]*)", row["output"])
            if (
                answer
                and stated
                and stated[-1][0]
                and normalize_gold(stated[-1][1], "math") == answer
            ):
                rejecting += 1
                assert not is_correct(extract_answer(row["output"], "math"), answer, "math")
    assert rejecting >= 5
