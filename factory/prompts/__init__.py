"""Teacher, answer-only and student prompts: CoT granularity levels 1-6 in four formats.

Levels and formats follow Chen et al. (2025), "Unveiling the Key Factors for Distilling
Chain-of-Thought Reasoning". The wording lives in one Jinja template per format (sharing
`_common.jinja`); level descriptions and the worked examples live in `levels.yaml`.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import yaml

from factory.questions import TASKS, letters, render_question, student_messages

__all__ = [
    "FORMATS",
    "LEVELS",
    "TASKS",
    "answer_only_messages",
    "describe",
    "render_question",
    "student_messages",
    "teacher_messages",
]

FORMATS: tuple[str, ...] = ("cot", "subq", "rar", "sym")
LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)

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


def _check(name: str, value: object, allowed: tuple) -> None:
    if value not in allowed or isinstance(value, bool):
        expected = ", ".join(map(str, allowed))
        raise ValueError(f"unknown {name} {value!r}; expected one of {expected}")


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
        letters=letters(task, choices),
        level=level,
        description=_SPEC["levels"][level]["description"],
        example_problem=_SPEC["example_problem"],
        example=_SPEC["formats"][format]["examples"][level],
    )


def answer_only_messages(
    question: str, *, task: str, choices: list[str] | None = None
) -> list[dict[str, str]]:
    """System + user messages asking for the answer line only, with no reasoning."""
    problem, options = render_question(question, task, choices), letters(task, choices)
    return _messages("answer_only.jinja", question=problem, task=task, letters=options)


def describe(format: str, level: int) -> str:
    """One-line description of a format and level, for dataset cards (without the config name)."""
    _check("format", format, FORMATS)
    _check("level", level, LEVELS)
    name, description = _SPEC["levels"][level]["name"], _SPEC["levels"][level]["description"]
    summary = _SPEC["formats"][format]["summary"]
    return f"{summary}, level {level} of 6 ({name}): {description}"
