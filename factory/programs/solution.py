"""What a program knows about one solved problem: its given quantities and every operation, each
with the words each granularity level needs. Task modules build it; `writing` turns it into text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One operation of a solution, in numbers, in symbols and in words (phrases without a final
    period, so writers can join them)."""

    calc: str  # the operation in numbers: "17 - 73"
    value: int
    symbol: str  # the quantity it finds, for the sym format: "s2"
    formula: str  # the operation in symbols: "s1 - x3"
    label: str  # what it finds, as a noun phrase: "difference of 17 and 73"
    name: str  # its name once found: "result 2"
    named: str  # the operation with earlier results by name: "result 1 - 73"
    sentence: str  # a clause saying what is found from what, leading into `calc`
    question: str  # the sub-question this step answers
    why: str  # why this operation is the right one, here
    rule: str  # the general rule behind it
    meaning: str  # what `symbol` is, for the sym format: "s2 is s1 minus x3"
    note: str = ""  # said after the value: " (rounded down)"

    @property
    def equation(self) -> str:
        return f"{self.calc} = {self.value}{self.note}"


@dataclass(frozen=True)
class Solution:
    """A solved problem: its answer, its steps, and the task's own words for the plan, the symbols
    and the final check."""

    answer: int
    steps: list[Step]
    groups: list[list[int]]  # the steps shown together on each line of a level-2 rationale
    plan: str  # the level-1 plan (or, with no step, what the problem already says)
    plan_questions: list[str]  # the level-1 sub-questions
    equation: str  # the level-1 equation with its symbols explained
    givens: list[tuple[str, int]]  # (symbol, value) of every given quantity
    let: str  # the given symbols with short notes: "x1 = 42, x2 = 25 (the numbers in order)"
    legend: str  # a sentence defining every symbol, starting with "Let"
    check: str  # the level-6 check, another way to the answer, starting in lower case


def chunks(count: int, most: int) -> list[list[int]]:
    """`range(count)` cut into at most `most` consecutive runs, as even as possible."""
    runs = min(count, most)
    sizes = [count // runs + (i < count % runs) for i in range(runs)] if runs else []
    starts = [sum(sizes[:i]) for i in range(runs)]
    return [list(range(start, start + size)) for start, size in zip(starts, sizes, strict=True)]


def listed(items: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return f"{', '.join(items[:-1])} and {items[-1]}" if len(items) > 1 else "".join(items)


def number(value: int) -> str:
    """A number as a right operand: negative ones in parentheses, `23 - (-33)`."""
    return f"({value})" if value < 0 else str(value)


def capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]
