"""Teacher, answer-only and student prompts: CoT granularity levels 1-6 in four formats.

Levels and formats follow Chen et al. (2025), "Unveiling the Key Factors for Distilling
Chain-of-Thought Reasoning". The wording lives in one Jinja template per format (sharing
`_common.jinja`); level descriptions and the worked examples live in `levels.yaml`.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import ascii_uppercase

import jinja2
import yaml

FORMATS: tuple[str, ...] = ("cot", "subq", "rar", "sym")
LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
TASKS: tuple[str, ...] = ("math", "multiple_choice", "yes_no")

_HERE = Path(__file__).parent
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
    autoescape=False,
)
_SPEC: dict = yaml.safe_load((_HERE / "levels.yaml").read_text(encoding="utf-8"))
# An option label already in the text: "(A) x", "A) x", "A. x" or "A: x".
_LABEL = re.compile(r"\s*(?:\(?([A-Za-z])\)|([A-Za-z])[.:](?=\s))\s*")


def _check(name: str, value: object, allowed: tuple) -> None:
    if value not in allowed or isinstance(value, bool):
        expected = ", ".join(map(str, allowed))
        raise ValueError(f"unknown {name} {value!r}; expected one of {expected}")


def _letters(task: str, choices: list[str] | None) -> list[str]:
    return list(ascii_uppercase[: len(choices or [])]) if task == "multiple_choice" else []


def _strip_label(choice: str, letter: str) -> str:
    """Drop an existing label from an option, but only when it is this option's own letter."""
    match = _LABEL.match(choice)
    if match and next(g for g in match.groups() if g).upper() == letter:
        return choice[match.end() :].strip()
    return choice.strip()


def render_question(question: str, task: str, choices: list[str] | None = None) -> str:
    """The problem as shown to teachers and students; options as '(A) text' lines for MC."""
    _check("task", task, TASKS)
    if task != "multiple_choice":
        if choices:
            raise ValueError(f"choices are only for task 'multiple_choice', not {task!r}")
        return question.strip()
    if not choices or len(choices) > 26:
        raise ValueError(f"task 'multiple_choice' needs 1 to 26 choices, got {len(choices or [])}")
    letters = _letters(task, choices)
    options = [f"({x}) {_strip_label(str(c), x)}" for x, c in zip(letters, choices, strict=True)]
    return "\n".join([question.strip(), *options])


def _messages(template: str, **context: object) -> list[dict[str, str]]:
    module = _ENV.get_template(template).make_module(context)
    return [
        {"role": "system", "content": str(module.system).strip()},
        {"role": "user", "content": str(module.user).strip()},
    ]


def teacher_messages(
    question: str, *, task: str, format: str, level: int, choices: list[str] | None = None
) -> list[dict[str, str]]:
    """System + user messages asking a teacher for a CoT at this format and granularity level."""
    _check("format", format, FORMATS)
    _check("level", level, LEVELS)
    return _messages(
        f"{format}.jinja",
        question=render_question(question, task, choices),
        task=task,
        letters=_letters(task, choices),
        level=level,
        description=_SPEC["levels"][level]["description"],
        example_problem=_SPEC["example_problem"],
        example=_SPEC["formats"][format]["examples"][level],
    )


def answer_only_messages(
    question: str, *, task: str, choices: list[str] | None = None
) -> list[dict[str, str]]:
    """System + user messages asking for the answer line only, with no reasoning."""
    problem, letters = render_question(question, task, choices), _letters(task, choices)
    return _messages("answer_only.jinja", question=problem, task=task, letters=letters)


def student_messages(
    question: str, *, task: str, choices: list[str] | None = None
) -> list[dict[str, str]]:
    """The student's prompt: the bare problem as one user message (no system, no instruction)."""
    return [{"role": "user", "content": render_question(question, task, choices)}]


def describe(format: str, level: int) -> str:
    """One-line description of a format and level, for dataset cards (without the config name)."""
    _check("format", format, FORMATS)
    _check("level", level, LEVELS)
    name, description = _SPEC["levels"][level]["name"], _SPEC["levels"][level]["description"]
    summary = _SPEC["formats"][format]["summary"]
    return f"{summary}, level {level} of 6 ({name}): {description}"
