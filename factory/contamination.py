"""Decontamination: which training questions also appear in an evaluation set.

A training question matches an evaluation question when their normalised texts are equal
(lower case, punctuation and spacing ignored), or when they share a run of `ngram` words (13 by
default, as is usual). The recipe's own test split is always checked; `cot.decontaminate.against`
names more sets (local files or Hub dataset splits).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The words of `text`, lower-cased, punctuation dropped: the unit both tests compare."""
    return WORD.findall(text.lower())


@dataclass
class Index:
    """The evaluation questions of every set, by normalised text and by word n-gram."""

    ngram: int
    texts: dict[str, set[str]] = field(default_factory=dict)  # normalised text -> sets
    grams: dict[tuple[str, ...], set[str]] = field(default_factory=dict)  # n-gram -> sets
    sizes: dict[str, int] = field(default_factory=dict)  # set -> questions

    def add(self, name: str, questions: list[str]) -> None:
        self.sizes[name] = self.sizes.get(name, 0) + len(questions)
        for question in questions:
            tokens = words(question)
            self.texts.setdefault(" ".join(tokens), set()).add(name)
            for gram in _ngrams(tokens, self.ngram):
                self.grams.setdefault(gram, set()).add(name)

    def matches(self, question: str) -> list[str]:
        """The evaluation sets `question` appears in, sorted (empty when it is clean)."""
        tokens = words(question)
        found = set(self.texts.get(" ".join(tokens), ()))
        for gram in _ngrams(tokens, self.ngram):
            found |= self.grams.get(gram, set())
        return sorted(found)


def _ngrams(tokens: list[str], n: int):
    return (tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def index_for(spec, problems: dict) -> Index:
    """The index of the recipe's test split (as `test`) and of every set `spec.against` names."""
    from factory.sources import eval_questions

    index = Index(spec.ngram)
    index.add("test", [problem.question for problem in problems.get("test", [])])
    for eval_set in spec.against:
        index.add(eval_set.name, eval_questions(eval_set))
    return index


def mark(traces: Iterable[dict], index: Index, action: str) -> Iterator[dict]:
    """Every trace with `contaminated_by` (the evaluation sets its question appears in); with
    `drop`, a contaminated trace that would have been kept is dropped as `contaminated`. A
    stream: each question is looked up once (the questions are the problems')."""
    by_question: dict[str, list[str]] = {}
    for trace in traces:
        question = trace["question"]
        if question not in by_question:
            by_question[question] = index.matches(question)
        sets = by_question[question]
        dropped = trace["drop_reason"] or ("contaminated" if sets and action == "drop" else None)
        yield {**trace, "contaminated_by": sets, "drop_reason": dropped}


def flagged(trace: dict) -> list[str]:
    """The evaluation sets a trace counts in: its own, if it is kept or dropped as contaminated."""
    if trace["drop_reason"] in (None, "contaminated"):
        return trace.get("contaminated_by") or []
    return []


def counts(traces: Iterable[dict]) -> dict[str, dict[str, int]]:
    """Per config, per evaluation set: how many of its rows (kept, or dropped as contaminated)
    have a question that appears there."""
    found: dict[str, Counter] = {}
    for trace in traces:
        found.setdefault(trace["config"], Counter()).update(flagged(trace))
    return {config: dict(sorted(tally.items())) for config, tally in found.items()}
