"""Multiple-choice options written inside a question's text, for sources with no choices column.

Two layouts, as the paper's CSQA / OpenBookQA files write them: one option per line ("A. bank",
"(B) library", "C) park", "D: school"), or inline ("... A: bank, B: library, C: park"). The labels
must run A, B, C, ... in order, two or more of them; the options are cut out of the question so
the prompt renderer, which shows choices as "(A) text" lines, does not show them twice. Inline
labels are "(A)", "A:" or "A)", not "A." (an initial or a sentence end).
"""

from __future__ import annotations

import re

_LINE_OPTION_RE = re.compile(r"\s*(?:\(([A-Z])\)|([A-Z])[).:])\s+(\S.*?)\s*")
_INLINE_LABEL_RE = re.compile(r"\(([A-Z])\)\s*|(?:(?<=\s)|^)([A-Z])[):]\s+")  # not "A." inline
_HEADER_RE = re.compile(  # "Answer Choices:", "Options:", "Answer:" alone or ending a line
    r"[ \t]*\b(?:(?:answer\s+)?(?:choices|options)|answer)[ \t]*:?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_OPTION_END_RE = re.compile(r"[\s,;]*(?:\bor\b)?[\s,;]*$")


def split_options(question: str) -> tuple[str, list[str]] | None:
    """(the question without its options, the option texts), or None when it has none."""
    found = _line_options(question) or _inline_options(question)
    if found is None:
        return None
    stem, options = found
    stem = "\n".join(line.rstrip() for line in _HEADER_RE.sub("", stem).split("\n"))
    stem = re.sub(r"\n{3,}", "\n\n", stem).strip()
    return (stem, options) if stem and all(options) else None


def _line_options(question: str) -> tuple[str, list[str]] | None:
    """The last run of consecutive lines labelled A, B, C, ..."""
    lines = question.split("\n")
    best: list[tuple[int, str]] = []
    run: list[tuple[int, str]] = []
    for index, line in enumerate(lines):
        match = _LINE_OPTION_RE.fullmatch(line)
        letter = (match.group(1) or match.group(2)) if match else None
        if letter and run and letter == chr(ord("A") + len(run)) and index == run[-1][0] + 1:
            run.append((index, match.group(3)))
        else:
            run = [(index, match.group(3))] if letter == "A" else []
        if len(run) >= 2:
            best = list(run)
    if not best:
        return None
    first, last = best[0][0], best[-1][0]
    stem = "\n".join(lines[:first] + lines[last + 1 :])
    return stem, [text for _, text in best]


def _inline_options(question: str) -> tuple[str, list[str]] | None:
    """The last line with a run of labels A, B, C, ...; the last option ends with the line."""
    found, offset = None, 0
    for line in question.split("\n"):
        run = _label_run(list(_INLINE_LABEL_RE.finditer(line)))
        if run:
            found = (offset, line, run)
        offset += len(line) + 1
    if found is None:
        return None
    offset, line, run = found
    ends = [label.start() for label in run[1:]] + [len(line)]
    options = [_OPTION_END_RE.sub("", line[a.end() : b]) for a, b in zip(run, ends, strict=True)]
    return question[: offset + run[0].start()] + question[offset + len(line) :], options


def _label_run(labels: list[re.Match]) -> list[re.Match]:
    """The first run of labels that starts at A and goes on letter by letter."""
    for index, label in enumerate(labels):
        if (label.group(1) or label.group(2)) != "A":
            continue
        run = [label]
        for following in labels[index + 1 :]:
            if (following.group(1) or following.group(2)) != chr(ord("A") + len(run)):
                break
            run.append(following)
        if len(run) >= 2:
            return run
    return []
