"""The `program` teacher: rationales written from reasoning-gym's own solutions, verified at every
level and format, with the measured steps factory/programs/writing.py documents, clear recipe
errors for what it cannot write, and a build that keeps every row and recomputes nothing."""

from __future__ import annotations

import json
import logging
import sqlite3
import textwrap
from pathlib import Path

import pytest
import reasoning_gym

from factory.paths import cache_path
from factory.programs import FORMATS, SOLVERS, ProgramError, rationale, solve, write
from factory.recipe import RecipeError, load_recipe
from factory.recipe.schema import PROGRAM_FORMATS, PROGRAM_TASKS
from factory.run import build_dataset
from factory.verify import count_steps, count_tokens, verify

LEVELS = range(1, 7)
CASES = {
    "chain_sum 3-4 terms of 2 digits": (
        "chain_sum",
        {"min_terms": 3, "max_terms": 4, "min_digits": 2, "max_digits": 2},
    ),
    "chain_sum with negative numbers": ("chain_sum", {"allow_negation": True}),
    "chain_sum 12-20 terms of 1 digit": (
        "chain_sum",
        {"min_terms": 12, "max_terms": 20, "max_digits": 1},
    ),
    "basic_arithmetic": ("basic_arithmetic", {}),
    "basic_arithmetic 6-8 terms": (
        "basic_arithmetic",
        {"min_terms": 6, "max_terms": 8, "max_digits": 2},
    ),
    "basic_arithmetic natural, spaced at random": (
        "basic_arithmetic",
        {"format_style": "natural", "whitespace": "random"},
    ),
    "leg_counting": ("leg_counting", {}),
    "leg_counting one kind": ("leg_counting", {"min_animals": 1, "max_animals": 1}),
    "leg_counting 10-20 kinds": ("leg_counting", {"min_animals": 10, "max_animals": 20}),
}


def entries(task: str, options: dict, seed: int, size: int = 25) -> list[dict]:
    return list(reasoning_gym.create_dataset(task, size=size, seed=seed, **options))


def traces_of(task: str, entry: dict, index: int) -> list[dict]:
    """A trace per format and level, as generate would make it."""
    return [
        {
            "config": f"{fmt}-L{level}",
            "problem_id": f"train-{index:05d}",
            "raw_output": rationale(task, entry, fmt, level),
            "finish_reason": "stop",
            "answer": entry["answer"],
            "choices": None,
        }
        for fmt in FORMATS
        for level in LEVELS
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("case", CASES)
def test_every_rationale_verifies_at_every_level_and_format(case, seed):
    task, options = CASES[case]
    data = entries(task, options, seed)
    traces = [t for i, entry in enumerate(data) for t in traces_of(task, entry, i)]
    checked = verify(traces, "math", ["truncated", "unparseable", "wrong", "repetitive"])
    dropped = [
        (t["config"], t["drop_reason"], t["raw_output"]) for t in checked if t["drop_reason"]
    ]
    assert not dropped
    assert all(t["raw_output"].endswith(f"The answer is {t['answer']}.") for t in traces)
    assert len(traces) == len(data) * 18


def test_the_cases_reach_negative_numbers_parentheses_signs_and_rounding():
    """The sweep above is not vacuous: what makes arithmetic tricky does occur in it."""
    data = entries("chain_sum", {"allow_negation": True}, 0)
    assert any(e["answer"].startswith("-") for e in data)
    assert any(" (-" in rationale("chain_sum", e, "cot", 2) for e in data)
    data = entries(*CASES["basic_arithmetic"], 1) + entries(*CASES["basic_arithmetic 6-8 terms"], 1)
    texts = [rationale("basic_arithmetic", e, "cot", 4) for e in data]
    for mark in ("÷", "×", "gives its negative", "(rounded down)", " (-"):
        assert any(mark in text for text in texts), mark


def test_a_chain_sum_rationale_at_each_level():
    entry = {
        "question": "42 - 25 - 73 =",
        "answer": "-56",
        "metadata": {"expression": "42 - 25 - 73"},
    }
    text = {level: rationale("chain_sum", entry, "cot", level) for level in LEVELS}
    assert text[1] == (
        "Go through the numbers from left to right, adding or subtracting each as its sign says.\n"
        "The answer is -56."
    )
    assert text[2] == "1. 42 - 25 = 17.\n2. 17 - 73 = -56.\nThe answer is -56."
    assert text[3] == (
        "1. Difference of 42 and 25: 42 - 25 = 17.\n"
        "2. Difference of 17 and 73: 17 - 73 = -56.\nThe answer is -56."
    )
    assert "2. Subtracting 73 from the earlier result 17 gives the difference" in text[4]
    assert "Final result = result 1 - 73 = 17 - 73 = -56." in text[5]
    assert "2. Rule: as in step 1. The minus sign between 17 and 73" in text[6]
    assert "3. Check: undoing each step from the last one back gives -56 + 73 = 17 and " in text[6]


@pytest.mark.parametrize("case", CASES)
def test_measured_steps_per_level_are_as_documented(case):
    task, options = CASES[case]
    for entry in entries(task, options, 3, size=15):
        solution = solve(task, entry)
        n, g = len(solution.steps), len(solution.groups)
        expected = {
            "cot": [1, g, n, n, 2 * n, 3 * n + 2],
            "subq": [2, 2 * g, 2 * n, 2 * n, 3 * n, 4 * n + 3],
            "sym": [1, 1 + g, 1 + n, 1 + n, 1 + 2 * n, 3 * n + 3],
        }
        for fmt in FORMATS:
            texts = [write(solution, fmt, level) for level in LEVELS]
            steps, tokens = [count_steps(t) for t in texts], [count_tokens(t) for t in texts]
            assert steps == expected[fmt], (fmt, texts)
            assert steps[3] < steps[4] < steps[5] and sorted(steps) == steps
            assert tokens[1] < tokens[2] < tokens[3] < tokens[4] < tokens[5], (fmt, tokens)
            plan = texts[0].splitlines()[0]
            assert len(texts[0].splitlines()) == 2 and (fmt == "sym" or "=" not in plan)
            checked = ["The result is consistent." in t for t in texts]
            assert g <= 4 and checked == [False] * 5 + [True]


def test_division_rounds_down_as_python_does_and_says_so():
    entry = {"question": "", "answer": "-4", "metadata": {"expression": "-( 3 + 4 ) / 2"}}
    assert rationale("basic_arithmetic", entry, "sym", 3) == (
        "Let x1 = 3, x2 = 4, x3 = 2 (the numbers in order).\n"
        "s1 = x1 + x2 = 3 + 4 = 7.\n"
        "s2 = -s1 = -(7) = -7.\n"
        "r = s2 ÷ x3 = -7 ÷ 2 = -4 (rounded down).\n"
        "The answer is -4."
    )
    assert "-4 × 2 + 1 = -7" in rationale("basic_arithmetic", entry, "cot", 6)


def test_a_problem_without_operations_says_so_at_every_level():
    entry = {"question": "5 =", "answer": "5", "metadata": {"expression": "5"}}
    assert {rationale("chain_sum", entry, f, lvl) for f in FORMATS for lvl in LEVELS} == {
        "There is nothing to work out: the number is 5.\nThe answer is 5."
    }


def test_a_wrong_gold_answer_is_not_copied_and_a_division_by_zero_is_not_solved():
    """reasoning-gym's basic_arithmetic without parentheses works its answers left to right and
    may divide by another number than the one shown, or show a division by 0."""
    data = entries("basic_arithmetic", {"allow_parentheses": False}, 0, size=100)
    unsolvable = [e for e in data if "/ 0" in e["question"]]
    with pytest.raises(ProgramError, match="cannot solve"):
        solve("basic_arithmetic", unsolvable[0])
    wrong = next(e for e in data if e not in unsolvable and e["answer"] != str(_value(e)))
    trace = traces_of("basic_arithmetic", wrong, 0)[2]
    assert trace["raw_output"].endswith(f"The answer is {_value(wrong)}.")
    assert verify([trace], "math", ["wrong"])[0]["drop_reason"] == "wrong"


def _value(entry: dict) -> int:
    return eval(entry["metadata"]["expression"].replace("/", "//"))  # Python as the oracle


def test_the_recipe_knows_every_task_and_format_the_programs_write():
    assert set(SOLVERS) == set(PROGRAM_TASKS) and FORMATS == PROGRAM_FORMATS


# --- the recipe and the build -----------------------------------------------------------------

RECIPE = """\
source:
  kind: gym
  dataset: chain_sum
  train: 12
  test: 4
  options: {min_terms: 3, max_terms: 4, min_digits: 2, max_digits: 2}
teacher: {backend: program, name: program}
cot:
  levels: [1, 2, 3, 4, 5, 6]
  formats: [cot, subq, sym]
dataset: {repo_id: local/program-test}
"""


def write_recipe(tmp_path: Path, text: str = RECIPE) -> Path:
    path = tmp_path / "program.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def recipe_error(path: Path) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    return str(info.value)


def test_a_task_without_a_program_is_a_recipe_error_naming_the_tasks_with_one(tmp_path):
    message = recipe_error(write_recipe(tmp_path, RECIPE.replace("chain_sum", "products")))
    assert message.startswith(f"{tmp_path / 'program.yaml'}:3: source.dataset: ")
    assert "the program teacher 'program' has no program for 'products'" in message
    assert message.endswith("tasks with one: basic_arithmetic, chain_sum, leg_counting")


def test_a_source_that_is_not_generated_is_a_recipe_error(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"question": "1 + 1", "answer": "2"}\n')
    files = f"source: {{kind: files, train: {tmp_path / 'train.jsonl'}}}\n"
    path = write_recipe(tmp_path, files + "teacher:" + RECIPE.split("teacher:")[1])
    message = recipe_error(path)
    assert ":1: source.kind: the program teacher 'program' needs a reasoning-gym" in message


def test_a_format_the_program_does_not_write_is_a_recipe_error(tmp_path):
    path = write_recipe(tmp_path, RECIPE.replace("[cot, subq, sym]", "[cot, rar]"))
    message = recipe_error(path)
    assert ":10: cot.formats[1]: the program teacher 'program' writes the formats " in message
    assert "cot, subq, sym, not 'rar'" in message


def test_a_build_keeps_every_row_and_a_rerun_computes_nothing(tmp_path, home, caplog):
    recipe = load_recipe(write_recipe(tmp_path))
    first = build_dataset(recipe, home)
    stats = first.manifest.configs
    assert len(stats) == 18 + 1  # 3 formats x 6 levels, and answer-only
    for name, config in stats.items():
        assert (config["kept"], config["dropped"], config["problems_missing"]) == (12, {}, 0), name
    steps = [stats[f"cot-L{level}"]["mean_steps"] for level in LEVELS]
    assert steps == sorted(steps) and steps[3] < steps[4] < steps[5]
    traces = [json.loads(line) for line in first.run.traces.read_text().splitlines()]
    program = [t for t in traces if t["teacher"] == "program"]
    assert {t["teacher_params"]["backend"] for t in program} == {"program"}
    assert all(t["messages"] == [] and t["sample"] == 0 for t in program)
    card = (first.run.dataset / "README.md").read_text()
    assert "`program`: written by a program" in card
    cached = _cache_rows(home)
    assert len(cached) == 12 * 18

    caplog.set_level(logging.INFO, logger="factory.generate")
    second = build_dataset(recipe, home)
    assert "216 distinct prompts, 216 cached, 0 to ask" in caplog.text
    assert _cache_rows(home) == cached, "nothing recomputed, nothing rewritten"
    assert second.run.traces.read_text() == first.run.traces.read_text()


def _cache_rows(home: Path) -> dict[str, tuple]:
    with sqlite3.connect(cache_path(home)) as db:
        rows = db.execute("SELECT key, response, created FROM completions")
        return {key: (response, created) for key, response, created in rows}
