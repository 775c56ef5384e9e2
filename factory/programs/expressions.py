"""Arithmetic expressions as reasoning-gym writes them (`( 56 + -33 ) - 84`, `-(3 + 4) / 2`),
read with Python's grammar: `*` and `/` bind tighter than `+` and `-`, and a sign tighter than
both (`-x * y` is `(-x) * y`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

TOKEN = re.compile(r"\s*(\d+|[-+*/()])")


class ExpressionError(ValueError):
    """An expression this program cannot read."""


@dataclass(frozen=True)
class Node:
    op: str  # "num", "neg", "+", "-", "*", "/"
    args: tuple[Node, ...] = ()
    value: int = 0  # of a number
    grouped: bool = False  # written in parentheses


def parse(text: str) -> Node:
    """The expression's tree, with Python's precedence and signs."""
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        match = TOKEN.match(text, pos)
        if not match:
            raise ExpressionError(f"cannot read the expression {text!r} at {text[pos:]!r}")
        tokens.append(match.group(1))
        pos = match.end()
    parser = _Parser(tokens)
    node = parser.sum()
    if parser.pos != len(tokens):
        raise ExpressionError(f"cannot read the expression {text!r}: unexpected {parser.peek()!r}")
    return node


class _Parser:
    def __init__(self, tokens: list[str]):
        self.tokens, self.pos = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        self.pos += 1
        return self.tokens[self.pos - 1] if self.pos <= len(self.tokens) else None

    def sum(self) -> Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            node = Node(self.take(), (node, self.term()))
        return node

    def term(self) -> Node:
        node = self.factor()
        while self.peek() in ("*", "/"):
            node = Node(self.take(), (node, self.factor()))
        return node

    def factor(self) -> Node:
        token = self.take()
        if token in ("-", "+"):
            inner = self.factor()
            if token == "+":
                return inner
            return Node("num", value=-inner.value) if inner.op == "num" else Node("neg", (inner,))
        if token == "(":
            node = self.sum()
            if self.take() != ")":
                raise ExpressionError("a parenthesis is not closed")
            return replace(node, grouped=True)
        if token is None or not token.isdigit():
            raise ExpressionError(f"expected a number, got {token!r}")
        return Node("num", value=int(token))
