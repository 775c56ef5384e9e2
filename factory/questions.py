"""How a problem is shown to a model: the question, then its options as "(A) text" lines.

Self-contained (standard library only): the demo Space ships a copy of this file, so the students
see questions there exactly as training and evaluation rendered them.
"""

from __future__ import annotations

import re
from string import ascii_uppercase

TASKS: tuple[str, ...] = ("math", "multiple_choice", "yes_no")
# An option label already in the text: "(A) x", "A) x", "A. x" or "A: x".
_LABEL = re.compile(r"\s*(?:\(?([A-Za-z])\)|([A-Za-z])[.:](?=\s))\s*")


def letters(task: str, choices: list[str] | None) -> list[str]:
    """The option letters of a multiple-choice problem (none for other tasks)."""
    return list(ascii_uppercase[: len(choices or [])]) if task == "multiple_choice" else []


def _strip_label(choice: str, letter: str) -> str:
    """Drop an existing label from an option, but only when it is this option's own letter."""
    match = _LABEL.match(choice)
    if match and next(g for g in match.groups() if g).upper() == letter:
        return choice[match.end() :].strip()
    return choice.strip()


def render_question(question: str, task: str, choices: list[str] | None = None) -> str:
    """The problem as shown to teachers and students; options as '(A) text' lines for MC."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if task != "multiple_choice":
        if choices:
            raise ValueError(f"choices are only for task 'multiple_choice', not {task!r}")
        return question.strip()
    if not choices or len(choices) > 26:
        raise ValueError(f"task 'multiple_choice' needs 1 to 26 choices, got {len(choices or [])}")
    options = [
        f"({x}) {_strip_label(str(c), x)}"
        for x, c in zip(letters(task, choices), choices, strict=True)
    ]
    return "\n".join([question.strip(), *options])


def student_messages(
    question: str, *, task: str, choices: list[str] | None = None
) -> list[dict[str, str]]:
    """The student's prompt: the bare problem as one user message (no system, no instruction)."""
    return [{"role": "user", "content": render_question(question, task, choices)}]
