"""Teacher prompts: every format x level renders its own description and worked example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from factory import prompts
from factory.prompts import (
    FORMATS,
    LEVELS,
    answer_only_messages,
    describe,
    render_question,
    student_messages,
    teacher_messages,
)

SPEC = yaml.safe_load((Path(prompts.__file__).parent / "levels.yaml").read_text(encoding="utf-8"))
EXAMPLE_ANSWER = 5 * 14 - 23  # the worked example problem: 5 shelves of 14 books, 23 lent out
ANSWER_LINE = re.compile(r"^The answer is (-?\d+(?:\.\d+)?)\.$")
QUESTION = "Ana has 12 stickers and gives away 5. How many stickers does she have left?"
CHOICES = ["A) 5", "(B) 7", "C. 17", "19"]


def example(format: str, level: int) -> str:
    return SPEC["formats"][format]["examples"][level]


def text(messages: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in messages)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("format", FORMATS)
def test_each_format_and_level_shows_its_own_description_and_example(format, level):
    messages = teacher_messages(QUESTION, task="math", format=format, level=level)
    assert [m["role"] for m in messages] == ["system", "user"]
    system, user = (m["content"] for m in messages)
    assert SPEC["levels"][level]["description"] in system
    assert f"level {level}" in system
    assert QUESTION in user
    assert SPEC["example_problem"] in user
    assert example(format, level) in user
    others = [example(f, n) for f in FORMATS for n in LEVELS if (f, n) != (format, level)]
    assert not any(other in user for other in others)
    assert "The answer is <number>." in system
    assert "{{" not in text(messages) and "{%" not in text(messages)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("format", FORMATS)
def test_worked_examples_end_with_one_correct_answer_line(format, level):
    lines = example(format, level).splitlines()
    match = ANSWER_LINE.match(lines[-1])
    assert match, lines[-1]
    assert float(match[1]) == EXAMPLE_ANSWER
    assert not any("The answer is" in line for line in lines[:-1])


@pytest.mark.parametrize("format", FORMATS)
def test_granularity_is_visible_in_the_examples(format):
    words = [len(example(format, level).split()) for level in LEVELS]
    assert words == sorted(words), words
    assert words[-1] > 3 * words[0]
    plan = example(format, 1).splitlines()[:-1]
    assert len(plan) == 1 and len(plan[0].split()) <= 20, plan


def test_level_6_examples_end_with_a_check_and_level_1_examples_compute_nothing():
    for format in FORMATS:
        assert re.search(r"check", example(format, 6), re.IGNORECASE), format
        assert str(EXAMPLE_ANSWER) not in example(format, 1).splitlines()[0], format


def test_format_templates_ask_for_their_format():
    def system(format: str) -> str:
        return teacher_messages(QUESTION, task="math", format=format, level=3)[0]["content"]

    assert "Q1" in system("subq") and "Q1" in example("subq", 3)
    assert "Restated:" in system("rar") and example("rar", 3).startswith("Restated:")
    assert "equation" in system("sym") and "=" in example("sym", 3)
    assert len({system(f) for f in FORMATS}) == len(FORMATS)


def test_render_question_lists_relabelled_options():
    rendered = render_question(" Which is prime? ", "multiple_choice", CHOICES)
    assert rendered == "Which is prime?\n(A) 5\n(B) 7\n(C) 17\n(D) 19"
    assert render_question("Q?", "multiple_choice", ["A cat", "b) dog"]) == "Q?\n(A) A cat\n(B) dog"
    assert render_question(QUESTION, "math") == QUESTION
    assert render_question("Is 7 prime?", "yes_no") == "Is 7 prime?"


def test_multiple_choice_asks_for_a_letter():
    for format in FORMATS:
        messages = teacher_messages(
            "Which is prime?", task="multiple_choice", format=format, level=2, choices=CHOICES
        )
        assert "(A) 5\n(B) 7\n(C) 17\n(D) 19" in messages[1]["content"]
        assert "The answer is (<letter>)." in text(messages)
        assert "A, B, C, D" in text(messages)
        assert "<number>" not in text(messages)


def test_yes_no_asks_for_yes_or_no():
    messages = teacher_messages("Is 91 prime?", task="yes_no", format="cot", level=4)
    assert "The answer is yes." in text(messages) and "The answer is no." in text(messages)
    assert "<number>" not in text(messages) and "<letter>" not in text(messages)


@pytest.mark.parametrize("task", ["math", "multiple_choice", "yes_no"])
def test_answer_only_asks_for_the_answer_line_only(task):
    choices = CHOICES if task == "multiple_choice" else None
    messages = answer_only_messages(QUESTION, task=task, choices=choices)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert render_question(QUESTION, task, choices) in messages[1]["content"]
    assert "The answer is" in messages[0]["content"]
    assert "no reasoning" in messages[0]["content"]
    assert "answer line only" in messages[1]["content"]
    assert not any(example(f, n) in text(messages) for f in FORMATS for n in LEVELS)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"task": "math", "format": "tree", "level": 3}, "'tree'"),
        ({"task": "math", "format": "cot", "level": 7}, "7"),
        ({"task": "math", "format": "cot", "level": "3"}, "'3'"),
        ({"task": "essay", "format": "cot", "level": 3}, "'essay'"),
    ],
)
def test_unknown_arguments_raise_naming_the_value(kwargs, bad):
    with pytest.raises(ValueError, match=re.escape(bad)):
        teacher_messages(QUESTION, **kwargs)


def test_other_bad_inputs_raise():
    with pytest.raises(ValueError, match="'essay'"):
        answer_only_messages(QUESTION, task="essay")
    with pytest.raises(ValueError, match="'essay'"):
        student_messages(QUESTION, task="essay")
    with pytest.raises(ValueError, match="'tree'"):
        describe("tree", 1)
    with pytest.raises(ValueError, match="0"):
        describe("cot", 0)
    with pytest.raises(ValueError, match="choices"):
        render_question(QUESTION, "multiple_choice")
    with pytest.raises(ValueError, match="choices"):
        render_question(QUESTION, "math", CHOICES)


def test_rendering_is_deterministic():
    def render():
        kw = {"task": "multiple_choice", "choices": CHOICES}
        return teacher_messages("Q?", format="sym", level=6, **kw), answer_only_messages("Q?", **kw)

    assert render() == render()


@pytest.mark.parametrize("task", ["math", "multiple_choice", "yes_no"])
def test_student_messages_are_the_bare_question(task):
    choices = CHOICES if task == "multiple_choice" else None
    messages = student_messages(QUESTION, task=task, choices=choices)
    assert messages == [{"role": "user", "content": render_question(QUESTION, task, choices)}]


def test_describe_is_one_line_per_config():
    lines = {describe(f, n) for f in FORMATS for n in LEVELS}
    assert len(lines) == len(FORMATS) * len(LEVELS)
    assert all("\n" not in line for line in lines)
    assert describe("subq", 3).startswith("sub-questions")
    assert SPEC["levels"][3]["description"] in describe("subq", 3)
