"""The one answer extractor: gold normalisation, answer extraction and correctness.

Used to verify teacher chain-of-thought outputs and to evaluate students, so both judge a model's
answer the same way. Task types: ``math`` (numbers, fractions, LaTeX), ``multiple_choice``
(letters) and ``yes_no``.
"""

from __future__ import annotations

import math
import re
import threading
from fractions import Fraction

TaskType = str  # "math" | "multiple_choice" | "yes_no"
TASKS = ("math", "multiple_choice", "yes_no")

_SEP = r"[\s._-]*"  # also matches "TheanswerisTrue" and "The.answer.is.False"
_ANSWER_RE = re.compile(
    rf"the{_SEP}(?:(?:final|correct){_SEP})?answer{_SEP}is|\banswer\s*:", re.IGNORECASE
)
_NEGATED_RE = re.compile(r"not\b", re.IGNORECASE)  # "The answer is not 26, ..." states no answer
_LEADING_TAGS_RE = re.compile(r"^(?:\s*<[^<>\n]{1,40}>)+")  # "The answer is <answer> 16"
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUMBER = r"-?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(?:/\d+)?"
_NUMBER_RE = re.compile(rf"(?<![\w.]){_NUMBER}(?!(?:st|nd|rd|th)\b)")  # not "3rd"
_FULL_NUMBER_RE = re.compile(_NUMBER)
_NOISE_RE = re.compile(r"\\?[$%]|\\[,!;]|\\(?:text|mathrm)\{[^{}]*\}")  # $, %, spacing, units
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")  # a period that is not a decimal point
_LATEX_MARKUP_RE = re.compile(r"\\[A-Za-z]+|[{}$]")  # "\text{Yes}" -> "Yes"
_CALC_MARK_RE = re.compile(r"<<[^>]*>>")
_LETTER_RE = re.compile(  # "(c)", "C) 21", "C.", "C", "c", "option C"; not the "a" of "a total"
    r"(?:(?i:option|choice)\s*)?(?:\(([A-Za-z])\)|([A-Z])(?=[).:,\s]|$)|([a-z])(?=[).:]|\s*$))"
)
_CHOICE_PREFIX_RE = re.compile(r"^\s*\(?([A-Za-z])\s*[).:]\s*")
_YES_NO = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}


def final_answer_line(answer: str) -> str:
    """'The answer is X.': the line every teacher CoT and answer-only completion ends with."""
    return f"The answer is {str(answer).strip().rstrip('.')}."


def split_reference(answer: str) -> tuple[str | None, str]:
    """Split a GSM8K answer field into (rationale without <<calculator>> marks, final answer)."""
    if "####" not in answer:
        return None, answer
    rationale, final = answer.rsplit("####", 1)
    return _CALC_MARK_RE.sub("", rationale).strip(), final.strip()


def normalize_gold(answer: str, task: str, choices: list[str] | None = None) -> str:
    """The canonical form of a gold answer for `task`; ValueError when there is none."""
    text = str(answer).strip()
    if task == "math":
        text = split_reference(text)[1]
        gold = _canonical_math(text)
    elif task == "multiple_choice":
        gold = _parse_choice(text, choices)
    elif task == "yes_no":
        gold = _parse_yes_no(text)
    else:
        raise ValueError(f"unknown task type {task!r} (expected {', '.join(TASKS)})")
    if not gold:
        among = f" among choices {choices}" if choices else ""
        raise ValueError(f"cannot normalise gold answer {answer!r} for task {task!r}{among}")
    return gold


def extract_answer(text: str, task: str, choices: list[str] | None = None) -> str | None:
    """The final answer of a model output, normalised like the gold answers, or None.

    Tries the last 'The answer is X' / 'Answer: X' that parses, then the last \\boxed{...}, then
    (math only) the last number in the text.
    """
    parse = {
        "math": _math_span,
        "multiple_choice": lambda span: _parse_choice(span, choices),
        "yes_no": _parse_yes_no,
    }.get(task)
    if parse is None:
        raise ValueError(f"unknown task type {task!r} (expected {', '.join(TASKS)})")
    for span in _stated_answers(text, keep_sign=task == "math"):
        if answer := parse(span):
            return answer
    boxed = _last_boxed(text)
    if boxed is not None and (answer := parse(boxed)):
        return answer
    if task == "math":
        numbers = _NUMBER_RE.findall(text.replace("−", "-"))
        return _canonical_number(numbers[-1]) if numbers else None
    return None


def _stated_answers(text: str, keep_sign: bool) -> list[str]:
    """The text after each 'The answer is' / 'Answer:' up to the line end, last first."""
    spans = []
    for match in reversed(list(_ANSWER_RE.finditer(text))):
        span = _LEADING_TAGS_RE.sub("", text[match.end() :].split("\n", 1)[0])
        span = span.lstrip(" \t:") if keep_sign else span.lstrip(" \t:._-")
        if not _NEGATED_RE.match(span):
            spans.append(span)
    return spans


def is_correct(predicted: str | None, gold: str, task: str) -> bool:
    """Whether an extracted answer matches a normalised gold answer."""
    if predicted is None:
        return False
    if task != "math":
        return predicted == gold
    pred, ref = _canonical_math(predicted), _canonical_math(gold)
    if pred is not None and pred == ref:
        return True
    pred_value, ref_value = _to_float(pred or predicted), _to_float(ref or gold)
    if pred_value is not None and ref_value is not None:
        return math.isclose(pred_value, ref_value, rel_tol=1e-6)
    return _math_verify_equal(ref or gold, pred or predicted)


def _canonical_number(number: str) -> str:
    """'1,234.50' -> '1234.5', '145.0' -> '145'; fractions and integers unchanged."""
    number = number.replace(",", "")
    if "." in number and "/" not in number:
        number = number.rstrip("0").rstrip(".") or "0"
    return "0" if number in ("-0", "-", "") else number


def _canonical_math(text: str) -> str | None:
    """Strip '$', '%', spaces and a final period; numbers canonical, other text (LaTeX) kept."""
    text = _NOISE_RE.sub("", text.replace("−", "-")).strip().rstrip(".").strip()
    if _FULL_NUMBER_RE.fullmatch(text):
        return _canonical_number(text)
    return text or None


def _math_span(span: str) -> str | None:
    """The answer in the text after 'The answer is' or inside \\boxed{}: a number or LaTeX."""
    if _BOXED_RE.search(span) and (inner := _last_boxed(span)) is not None:
        span = inner
    cleaned = _NOISE_RE.sub("", span.replace("−", "-"))
    cleaned = _SENTENCE_END_RE.split(cleaned, maxsplit=1)[0].strip()
    if re.search(r"[\\^{]", cleaned):  # LaTeX: keep the whole expression
        return cleaned or None
    cleaned = cleaned.rsplit("=", 1)[-1]  # "x = 5" -> "5"
    number = _NUMBER_RE.search(cleaned)
    return _canonical_number(number.group()) if number else None


def _last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (nested braces allowed), or None."""
    starts = [match.end() for match in _BOXED_RE.finditer(text)]
    if not starts:
        return None
    depth, start = 1, starts[-1]
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start:index].strip()
    return None


def _parse_yes_no(text: str) -> str | None:
    """'yes'/'no' from the first word of `text` (True/False, any case, trailing punctuation)."""
    words = re.findall(r"[A-Za-z]+", _LATEX_MARKUP_RE.sub("", text))
    return _YES_NO.get(words[0].lower()) if words else None


def _parse_choice(text: str, choices: list[str] | None) -> str | None:
    """The choice letter stated in `text` ('(C)', 'C) 21', 'c') or the letter of a choice's text."""
    text = _LATEX_MARKUP_RE.sub("", text).strip()
    valid = [chr(ord("A") + index) for index in range(len(choices))] if choices else None
    match = _LETTER_RE.match(text)
    if match:
        letter = next(group for group in match.groups() if group).upper()
        if valid is None or letter in valid:
            return letter
    return _match_choice_text(text, choices) if choices else None


def _match_choice_text(text: str, choices: list[str]) -> str | None:
    """The letter of the choice whose text `text` states (exactly, or as the same number)."""
    texts = [_CHOICE_PREFIX_RE.sub("", choice, count=1) for choice in choices]
    key = _text_key(text)
    for index, choice in enumerate(texts):
        if key and _text_key(choice) == key:
            return chr(ord("A") + index)
    number = _NUMBER_RE.search(text.replace("$", ""))
    value = _to_float(_canonical_number(number.group())) if number else None
    for index, choice in enumerate(texts):
        choice_value = _to_float(_canonical_math(choice) or "")
        if value is not None and choice_value is not None and math.isclose(value, choice_value):
            return chr(ord("A") + index)
    return None


def _text_key(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("$", "").replace(",", "")).strip(" .").lower()


def _to_float(text: str | None) -> float | None:
    if text is None or not _FULL_NUMBER_RE.fullmatch(text):
        return None
    try:
        return float(Fraction(text.replace(",", "")))
    except (ValueError, ZeroDivisionError):
        return None


def _math_verify_equal(gold: str, predicted: str) -> bool:
    """Symbolic equivalence through math-verify; any failure or timeout counts as not equal."""
    import math_verify
    from math_verify.errors import TimeoutException

    # math-verify times out through signal.alarm, which only works in the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold_parsed = math_verify.parse(f"${gold}$", parsing_timeout=timeout)
        pred_parsed = math_verify.parse(f"${predicted}$", parsing_timeout=timeout)
        return bool(math_verify.verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except (Exception, TimeoutException):
        return False
