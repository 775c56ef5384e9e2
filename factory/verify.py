"""Stage 3, verify: check each trace's answer against the gold one and measure its granularity.

Every trace gets `completion` (the cleaned rationale), `predicted_answer`, `correct`, `num_steps`,
`num_tokens` and `drop_reason`: the first of truncated, unparseable, wrong, repetitive, duplicate
that applies and that the recipe drops (`cot.drop`), else None. A reasoning teacher's thinking is
measured apart (`num_reasoning_tokens`, `num_reasoning_steps`) and is in the completion of long
(`-think`) traces only, which are also dropped as `overlong` past `cot.max_reasoning_tokens`. A
chain cut off while thinking is truncated, even when the server says it stopped. `verified`
checks a stream of traces one at a time.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator

from factory.answers import extract_answer, is_correct
from factory.reasoning import long_completion
from factory.recipe import DROP_REASONS
from factory.recipe.schema import OVERLONG

LEFTOVER_TAGS = re.compile(r"</?(?:[A-Z][A-Za-z ]{2,60}|explanation|answer|math)>")
LINE_BREAK_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)
ANSWER_LINE = re.compile(r"(?:the final answer is|the answer is)[^\n]*$", re.IGNORECASE | re.DOTALL)
STEP_BREAK = re.compile(
    r"\n+|\s{2,}"  # lines, and line breaks flattened to runs of spaces
    r"|(?<=[.!?;])\s+(?=\S)"  # sentence ends
    r"|(?<=[.!?])(?=[A-Z])|(?<=\d)(?=[A-Z][a-z])"  # line breaks lost: "26.Step 2", "26Number"
    r"|(?<=[.!?])(?=\d{1,2}\.\s*[A-Z])"  # numbered items run together: "290.2. Note"
    r"|\s(?=Step \d+\b)"
)
LIST_MARKER = re.compile(r"\(?\d{1,2}[.)]")  # "1." alone is a marker, not a step
TOKEN = re.compile(r"\w+|[^\w\s]")


def clean_completion(text: str) -> str:
    """The teacher's rationale without leftover template tags and surrounding whitespace."""
    text = LINE_BREAK_TAG.sub("\n", text)
    return LEFTOVER_TAGS.sub("", text).strip()


def count_steps(text: str) -> int:
    """Reasoning steps: sentences, lines and list items before the final answer line."""
    body = ANSWER_LINE.sub("", text).strip()
    return sum(
        1
        for part in STEP_BREAK.split(body)
        if re.search(r"\w", part) and not LIST_MARKER.fullmatch(part.strip())
    )


def count_tokens(text: str) -> int:
    """Word and punctuation tokens: a tokenizer-free length, comparable across teachers."""
    return len(TOKEN.findall(text))


def is_repetitive(text: str) -> bool:
    """A degenerate loop: a 16-word span recurs 3+ times, or most 8-word spans are repeats.
    (Shorter spans recur in sound rationales: "the number of campers who went rowing in".)"""
    words = text.lower().split()
    long_spans = _ngrams(words, 16)
    if long_spans and max(long_spans.values()) >= 3:
        return True
    spans = _ngrams(words, 8)
    total = sum(spans.values())
    return total >= 24 and len(spans) / total < 0.5


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def verify(traces: Iterable[dict], task: str, drop: list[str]) -> list[dict]:
    """The traces with their verification fields, in the same order."""
    return list(verified(traces, task, drop))


def verified(traces: Iterable[dict], task: str, drop: list[str]) -> Iterator[dict]:
    """`verify` as a stream: each trace verified as it comes. A kept trace is remembered by a
    16-byte digest of its config, problem and text, to find its duplicates."""
    kept: set[bytes] = set()
    reasons = _reasons(drop)
    for trace in traces:
        measured = _measured(trace)
        predicted = extract_answer(measured["completion"], task, trace.get("choices"))
        checks = _checks(trace, measured, predicted, task)
        text = " ".join(measured["completion"].lower().split())
        seen = (trace["config"], trace["problem_id"], text)
        seen_key = hashlib.blake2b(repr(seen).encode(), digest_size=16).digest()
        checks["duplicate"] = seen_key in kept
        reason = next((r for r in reasons if checks[r]), None)
        if reason is None:
            kept.add(seen_key)
        yield {
            **trace,
            **measured,
            "predicted_answer": predicted,
            "correct": not checks["wrong"],
            "drop_reason": reason,
        }


def _checks(trace: dict, measured: dict, predicted: str | None, task: str) -> dict[str, bool]:
    """Which drop reasons but `duplicate` hold for a trace."""
    return {
        "truncated": trace["finish_reason"] == "length" or bool(trace.get("thinking_cut")),
        "unparseable": predicted is None,
        "wrong": not is_correct(predicted, trace["answer"], task),
        "repetitive": is_repetitive(measured["completion"]),
        OVERLONG: _overlong(trace, measured.get("num_reasoning_tokens")),
    }


def _measured(trace: dict) -> dict:
    """A trace's completion (its answer; for a long trace, its thinking then its answer) and
    granularity: steps and tokens of the completion, and of the thinking alone where it has
    any (`num_reasoning_steps`, `num_reasoning_tokens`)."""
    answer = clean_completion(trace.get("output", trace["raw_output"]))
    measured = {"completion": answer, "num_steps": count_steps(answer)}
    measured["num_tokens"] = count_tokens(answer)
    if not trace.get("reasoning"):
        return measured
    reasoning = clean_completion(trace["reasoning"])
    thought = {"num_reasoning_steps": count_steps(reasoning)}
    thought["num_reasoning_tokens"] = count_tokens(reasoning)
    if trace.get("thinking"):
        measured["completion"] = long_completion(reasoning, answer)
        measured["num_steps"] += thought["num_reasoning_steps"]
        measured["num_tokens"] += thought["num_reasoning_tokens"]
    return measured | thought


def _overlong(trace: dict, reasoning_tokens: int | None) -> bool:
    limit = trace.get("max_reasoning_tokens")
    return bool(trace.get("thinking") and limit and (reasoning_tokens or 0) > limit)


def _reasons(drop: list[str]) -> list[str]:
    """The drop reasons in the order they are checked: the recipe's, with `overlong` (which its
    limit alone turns on) before `duplicate`."""
    chosen = [r for r in DROP_REASONS if r in drop and r != "duplicate"]
    return [*chosen, OVERLONG, *(["duplicate"] if "duplicate" in drop else [])]
