"""Rationales a program writes from a generated problem's own solution: the `program` teacher.

reasoning-gym entries carry their solution (an expression, or every animal and its count); a task
module (`arithmetic`, `legs`) turns it into a `Solution` of steps in numbers, symbols and words,
and `writing` writes it at a granularity level in a format, in our own wording. The arithmetic is
the program's own, so a rationale is exact for the problem as stated; where reasoning-gym's gold
answer disagrees (`basic_arithmetic` with `allow_parentheses: false` works left to right and may
divide by another number than the one shown, or by 0), verification drops it as wrong, and an
expression that divides by 0 has no solution (`ProgramError`).
`VERSION` changes whenever the text a solution gets changes, so cached rationales are renewed.
"""

from __future__ import annotations

from factory.programs.arithmetic import basic_arithmetic, chain_sum
from factory.programs.expressions import ExpressionError
from factory.programs.legs import leg_counting
from factory.programs.solution import Solution
from factory.programs.writing import FORMATS, write

__all__ = [
    "FORMATS",
    "SOLVERS",
    "VERSION",
    "ProgramError",
    "Solution",
    "rationale",
    "solve",
    "train_entries",
]

VERSION = 1
SOLVERS = {
    "basic_arithmetic": basic_arithmetic,
    "chain_sum": chain_sum,
    "leg_counting": leg_counting,
}


class ProgramError(ValueError):
    """An entry the task's program cannot read."""


def solve(task: str, entry: dict) -> Solution:
    """The solution of one reasoning-gym entry of `task`, from its metadata."""
    try:
        return SOLVERS[task](entry["metadata"])
    except (ExpressionError, KeyError, ZeroDivisionError) as err:
        raise ProgramError(f"{task}: cannot solve {entry.get('question')!r}: {err!r}") from None


def rationale(task: str, entry: dict, format: str, level: int) -> str:
    """The rationale of one entry at this format and level (1-6), ending with the answer line."""
    return write(solve(task, entry), format, level)


def train_entries(source) -> list[dict]:
    """The reasoning-gym entries of a gym source's train split, made as factory/sources.py makes
    them (same dataset, options, size and seed), with the metadata the problems lack."""
    import reasoning_gym

    size, seed = source.train, source.seed
    return list(
        reasoning_gym.create_dataset(source.dataset, size=size, seed=seed, **source.options)
    )
