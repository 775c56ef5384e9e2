"""Solutions of arithmetic expressions (reasoning-gym `chain_sum` and `basic_arithmetic`), worked
out one operation at a time in Python's order, `/` as floor division: how reasoning-gym computes
its answers."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from dataclasses import dataclass

from factory.programs.expressions import Node, parse
from factory.programs.solution import Solution, Step, chunks, listed, number

CHAIN_PLAN = (
    "Go through the numbers from left to right, adding or subtracting each as its sign says."
)
PLAN_QUESTIONS = [
    "Which operations does the expression ask for, and in which order?",
    "What value do they give when worked out one at a time?",
]

SIGN = {"+": "+", "-": "-", "*": "×", "/": "÷"}
APPLY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}
WORD = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}
NOUN = {"+": "sum", "-": "difference", "*": "product", "/": "quotient"}
SIGN_NAME = {"+": "plus", "-": "minus", "*": "multiplication", "/": "division"}
OPERATION = {"+": "an addition", "-": "a subtraction", "*": "a multiplication", "/": "a division"}
SENTENCE = {
    "+": "Adding {b} to {a} gives the sum",
    "-": "Subtracting {b} from {a} gives the difference",
    "*": "Multiplying {a} by {b} gives the product",
    "/": "Dividing {a} by {b} gives the quotient",
}
QUESTION = {
    "+": "What is the sum of {a} and {b}?",
    "-": "What is left when {b} is taken away from {a}?",
    "*": "What is {a} multiplied by {b}?",
    "/": "What is {a} divided by {b}{down}?",
}
RULES = {
    "+": "adding a number raises a value by that amount, and adding a negative number is the "
    "same as subtracting its size",
    "-": "subtracting a number lowers a value by that amount, and subtracting a negative number "
    "is the same as adding its size",
    "*": "multiplying by a number repeats a value that many times, and a product of two numbers "
    "of opposite signs is negative",
    "/": "dividing shares a value into equal parts, a quotient of numbers of opposite signs is "
    "negative, and here a quotient that is not whole is rounded down to the whole number below it",
    "neg": "a minus sign in front of parentheses multiplies their value by -1",
}
ORDER = {  # why a step comes when it does; short, as a rationale may say it many times
    "left": "taken from left to right",
    "parens": "taken first as it is in parentheses",
    "precedence": "taken before addition and subtraction",
}
DOWN = ", rounded down to a whole number"


def chain_sum(metadata: dict) -> Solution:
    """A chain of additions and subtractions, worked from left to right."""
    return _solve(parse(metadata["expression"]), CHAIN_PLAN)


def basic_arithmetic(metadata: dict) -> Solution:
    """An expression of + - × ÷ (rounding down), parentheses and signs, in Python's order."""
    root = parse(metadata["expression"])
    return _solve(root, _plan(root))


def _solve(root: Node, plan: str) -> Solution:
    walk = _Walk(root)
    answer = walk.visit(root).value
    symbols = [symbol for symbol, _ in walk.givens]
    names = listed(symbols) if len(symbols) <= 4 else f"{symbols[0]} to {symbols[-1]}"
    return Solution(
        answer=answer,
        steps=walk.steps,
        groups=chunks(len(walk.steps), 4),
        plan=plan if walk.steps else f"There is nothing to work out: the number is {answer}.",
        plan_questions=PLAN_QUESTIONS,
        equation=f"r = {_symbolic(root, iter(symbols))}, where {names} are the numbers of the "
        "expression in order",
        givens=walk.givens,
        let=", ".join(f"{s} = {v}" for s, v in walk.givens) + " (the numbers in order)",
        legend=_legend(names, walk),
        check=f"undoing each step from the last one back gives {listed(walk.inverses[::-1])}, "
        "which are the numbers each step started from. The result is consistent.",
    )


def _plan(root: Node) -> str:
    """Which kinds of operation come first, as the expression has them."""
    ops = _kinds(root)
    parts = [
        part
        for kinds, part in (
            ({"()"}, "what is inside the parentheses"),
            ({"*", "/"}, "multiplication and division"),
            ({"+", "-"}, "addition and subtraction"),
        )
        if ops & kinds
    ]
    down = ", rounding each division down to a whole number" if "/" in ops else ""
    return f"Work out {', then '.join(parts)}, going from left to right within each kind{down}."


def _kinds(node: Node) -> set[str]:
    own = {node.op} | ({"()"} if node.grouped and node.op != "num" else set())
    return own.union(*(_kinds(arg) for arg in node.args))


def _symbolic(node: Node, symbols: Iterator[str]) -> str:
    """The expression with its numbers as symbols, in the order they appear."""
    if node.op == "num":
        return next(symbols)
    if node.op == "neg":
        text = f"-{_symbolic(node.args[0], symbols)}"
    else:
        left = _symbolic(node.args[0], symbols)
        text = f"{left} {SIGN[node.op]} {_symbolic(node.args[1], symbols)}"
    return f"({text})" if node.grouped else text


def _legend(names: str, walk: _Walk) -> str:
    values = listed([str(value) for _, value in walk.givens])
    parts = [f"{names} be the numbers in the order they appear ({values})"]
    inner = len(walk.steps) - 1
    if inner:
        parts.append(
            "s1 the intermediate result"
            if inner == 1
            else f"s1 to s{inner} the intermediate results"
        )
    return "Let " + listed([*parts, "r the final result"])


@dataclass(frozen=True)
class _Known:
    """A value the solution has: a given number, or the result of a step (which has a name)."""

    value: int
    symbol: str
    name: str | None = None

    @property
    def said(self) -> str:
        return str(self.value) if self.name is None else f"the earlier result {self.value}"


class _Walk:
    """Steps in Python's order of evaluation, each with why it comes when it does."""

    def __init__(self, root: Node):
        self.total, self.steps, self.givens, self.inverses = _operations(root), [], [], []

    def visit(self, node: Node, in_group: bool = False, under_sum: bool = False) -> _Known:
        if node.op == "num":
            self.givens.append((f"x{len(self.givens) + 1}", node.value))
            return _Known(node.value, self.givens[-1][0])
        inner_group = in_group or node.grouped
        inner_sum = node.op in "+-" or (under_sum and not node.grouped and node.op != "neg")
        args = [self.visit(arg, inner_group, inner_sum) for arg in node.args]
        if node.op in "*/" and under_sum and not node.grouped:
            reason = "precedence"
        else:
            reason = "parens" if inner_group else "left"
        return self._record(node.op, args, reason)

    def _record(self, op: str, args: list[_Known], reason: str) -> _Known:
        last = len(self.steps) + 1 == self.total
        symbol = "r" if last else f"s{len(self.steps) + 1}"
        name = "final result" if last else f"result {len(self.steps) + 1}"
        step, inverse = (_negation if op == "neg" else _binary)(op, args, reason, symbol, name)
        self.steps.append(step)
        self.inverses.append(inverse)
        return _Known(step.value, symbol, name)


def _operations(node: Node) -> int:
    return (node.op != "num") + sum(_operations(arg) for arg in node.args)


def _binary(op: str, args: list[_Known], reason: str, symbol: str, name: str):
    a, b = args
    value = APPLY[op](a.value, b.value)
    down = DOWN if op == "/" and a.value % b.value else ""
    said = {"a": a.said, "b": b.said, "down": down}
    step = Step(
        calc=f"{a.value} {SIGN[op]} {number(b.value)}",
        value=value,
        symbol=symbol,
        formula=f"{a.symbol} {SIGN[op]} {b.symbol}",
        label=f"{NOUN[op]} of {a.value} and {b.value}",
        name=name,
        named=f"{a.name or a.value} {SIGN[op]} {b.name or number(b.value)}",
        sentence=SENTENCE[op].format(**said),
        question=QUESTION[op].format(**said),
        why=f"the {SIGN_NAME[op]} sign between {a.value} and {b.value} calls for {OPERATION[op]}"
        f"{down}, {ORDER[reason]}",
        rule=RULES[op],
        meaning=f"{symbol} is {a.symbol} {WORD[op]} {b.symbol}{down and ', rounded down'}",
        note=down and " (rounded down)",
    )
    return step, _inverse(op, a.value, b.value, value)


def _negation(op: str, args: list[_Known], reason: str, symbol: str, name: str):
    (x,) = args
    step = Step(
        calc=f"-({x.value})",
        value=-x.value,
        symbol=symbol,
        formula=f"-{x.symbol}",
        label=f"negative of {x.value}",
        name=name,
        named=f"-({x.name or x.value})",
        sentence=f"Changing the sign of {x.said} gives its negative",
        question=f"What is {x.said} with its sign changed?",
        why=f"the minus sign in front of the parentheses changes the sign of their value {x.value}",
        rule=RULES["neg"],
        meaning=f"{symbol} is the negative of {x.symbol}",
    )
    return step, f"-({-x.value}) = {x.value}"


def _inverse(op: str, a: int, b: int, value: int) -> str:
    """An equation that undoes the step, giving back its first number."""
    if op == "+":
        return f"{value} - {number(b)} = {a}"
    if op == "-":
        return f"{value} + {number(b)} = {a}"
    if op == "*":
        return f"{value} ÷ {number(b)} = {a}" if b else f"{b} × {number(a)} = {value}"
    rest = a - value * b
    return f"{value} × {number(b)}" + (f" + {number(rest)}" if rest else "") + f" = {a}"
