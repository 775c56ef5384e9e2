"""The one answer extractor: gold normalisation, answer extraction and correctness.

Used to verify teacher chain-of-thought outputs and to evaluate students, so both judge a model's
answer the same way. Task types: ``math`` (numbers, fractions, LaTeX), ``multiple_choice``
(letters) and ``yes_no``. Self-contained (stdlib and math-verify): the demo Space ships a copy.

Rules:
- The answer is the last 'The answer is X' ('My answer is', 'The correct answer should be',
  'Answer: X') whose X parses, then the last \\boxed{}, then (math) the last number, (yes/no) an
  opening 'Yes, ...' / 'No. ...'.
  Markdown bold, code and quotes around X are ignored. A negated ('is not 11'), retracted
  ('225 was incorrect', '12, which is wrong', '12. Wait, that's wrong.') or doubted ('12?')
  statement states nothing, and a number the text rejects is never taken as the last number.
- A math answer is a number, or an expression with a digit or \\pi and no words that math-verify
  parses into a finite value. Integers, decimals and fractions (a/b, \\frac{a}{b}) compare
  exactly; the one tolerance: a decimal with 2+ places matches a fraction with no finite decimal
  expansion (1/3) when within one unit of its last place (0.33, 0.3333333). Other LaTeX goes to
  math-verify.
- A letter is read only when it stands alone ('B', '(B)', 'B) text', 'option B'): 'A tundra' is
  option text and 'B and D' names no single option. Option text matches a choice's text.
- A reasoning model's thinking (`<think>...</think>`) is never read: the answer comes from the
  text after it, and a thinking block that never closed (cut off) leaves no answer.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

TASKS = ("math", "multiple_choice", "yes_no")
THINK_TAGS = ("<think>", "</think>")  # how reasoning models mark their thinking inline

_SEP = r"[\s._-]*"  # also matches "TheanswerisTrue" and "The.answer.is.False"
_ANSWER_RE = re.compile(
    rf"(?:(?:the|(?<![a-z])(?:my|our)){_SEP})?(?:(?:final|correct|right){_SEP})?answer{_SEP}"
    rf"(?:is|(?:should|would|must){_SEP}be)|\banswer\s*:",
    re.IGNORECASE,
)
_NEGATED_RE = re.compile(r"(?:[a-z]+ly\s+)?(?:not|n['’]t|never)\b", re.IGNORECASE)
_WRONG = r"(?:incorrect|wrong|mistaken|not\s+(?:correct|right)|a\s+(?:mistake|typo)|an\s+error)\b"
_RETRACTED_RE = re.compile(  # "225 was incorrect", "12, which is wrong", "12 (incorrect)"
    r"(?:(?!\b(?:because|since|as|while|whereas|if|when|unlike|than|so)\b)(?:[^,;:(.?!\n]|\.\d))*?"
    r"(?:\b(?:is|was|seems)\s+|[,;(]\s*(?:but\s+|and\s+)?"
    rf"(?:(?:that|this|which|it)(?:['’]s|\s+(?:is|was|seems))\s+)?)(?:[a-z]+ly\s+)?{_WRONG}",
    re.IGNORECASE,
)
_RETRACTED_NEXT_RE = re.compile(  # the next sentence: "Wait, that's wrong.", "No, wait"
    r"\s*(?:(?:wait|hmm+|oops|actually|no)\b[\s,.!]*)*(?:that|this|it)(?:['’]s|\s+(?:is|was))"
    rf"\s+(?:[a-z]+ly\s+)?{_WRONG}(?=\s*(?:[.!;,:]|$))|\s*(?:wait|oops)\b[\s,.!]*no\b"
    r"|\s*no\b[\s,.!]*wait\b",
    re.IGNORECASE,
)
_SENTENCE_RE = re.compile(r"[.!?](?=\s|$)|\n")
_LEADING_TAGS_RE = re.compile(r"^(?:\s*<[^<>\n]{1,40}>)+")  # "The answer is <answer> 16"
_MARKUP_RE = re.compile(r"\*\*|__|`|[\"“”‘]|(?<!\w)['’]|['’](?!\w)")  # **B**, `B`, "B", 'B'
_EMPHASIS_RE = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![\w*])")  # *B*
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUMBER = r"-?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(?:/\d+)?"
_NUMBER_RE = re.compile(rf"(?<![\w.]){_NUMBER}(?!(?:st|nd|rd|th)\b)")  # not "3rd"
_FULL_NUMBER_RE = re.compile(_NUMBER)
_LEAD_NUMBER_RE = re.compile(rf"\$?\s*({_NUMBER})")
_REFUSED_NUMBER_RE = re.compile(  # "not 11", "isn't 11", "instead of 11", "rather than 11"
    rf"(?:\bnot|n['’]t|\binstead\s+of|\brather\s+than)\s+(?:equal\s+to\s+)?\$?\s*({_NUMBER})",
    re.IGNORECASE,
)
_NOISE_RE = re.compile(r"\\?[$%]|\\[,!;]|\\(?:text|mathrm)\{[^{}]*\}")  # $, %, spacing, units
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")  # a period that is not a decimal point
_NOTE_RE = re.compile(r"(?<=\S)\s*\((?:[^()]|\([^()]*\))*\)")  # "20 (where x = 4)"
_LEADING_EQUATION_RE = re.compile(r"^\s*(?:(?:[A-Za-z_]\w*\s*|[-+*/×÷x^().,\d\s]+?)=\s*)+")
_LATEX_FRACTION_RE = re.compile(r"(-?)\\[dt]?frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}")
_LATEX_MARKUP_RE = re.compile(r"\\[A-Za-z]+|[{}$]")  # "\text{Yes}" -> "Yes"
_CALC_MARK_RE = re.compile(r"<<[^>]*>>")
_LETTER_RE = re.compile(  # "(c)", "C) 21", "C.", "C", "c", "option C"; not the "a" of "a total"
    r"(?:(?i:option|choice)\s+)?(?:\(([A-Za-z])\)|([A-Z])(?=[).:,\s]|$)|([a-z])(?=[).:]|\s*$))"
)
_MORE_LETTERS_RE = re.compile(r"\s*(?:[,&/+]|\band\b|\bor\b)\s*\(?[A-HJ-Z](?![\w'])")  # "B, D"
_PROSE_AFTER_RE = re.compile(r"\s+(?!(?:because|since|as|is|was)\b)[A-Za-z]{2,}")  # "A tundra"
_CLAUSE_END_RE = re.compile(r"[.!?;:,](?:\s|$)|\s(?:because|since|as|which|so)\s")
_CHOICE_PREFIX_RE = re.compile(r"^\s*\(?([A-Za-z])\s*[).:]\s*")
_ARTICLE_RE = re.compile(r"^(?:an?|the)\s+")
_VERDICT_RE = re.compile(  # an opening "No, because", "Yes.", "Yes\n"; not "No one"
    r"\s*(yes|no|true|false)(?:\s*(?:[,.!:;]|[-—–]\s|$)|[ \t]*\n)", re.IGNORECASE
)
_YES_NO = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}
_INFINITE = ("oo", "-oo", "zoo", "nan")
_WINDOW = 2000  # characters read after an answer phrase: the answer and the next sentence


def split_thinking(text: str, tags: tuple[str, str] = THINK_TAGS) -> tuple[str | None, str, bool]:
    """(the thinking or None, the text without it, whether the thinking closed). The thinking
    ends at the last closing tag and starts after an opening tag, or at the start when the
    prompt opened it; an opening tag that never closes holds everything after it."""
    opening, closing = tags
    end = text.rfind(closing)
    start = text.find(opening, 0, end if end >= 0 else len(text))
    if end < 0 and start < 0:
        return None, text, True
    if end < 0:
        thinking, rest, closed = text[start + len(opening) :], text[:start], False
    else:
        begin = start + len(opening) if start >= 0 else 0
        thinking, closed = text[begin:end], True
        rest = (text[:start] if start >= 0 else "") + text[end + len(closing) :]
    return thinking.strip() or None, rest.strip(), closed


def strip_thinking(text: str, tags: tuple[str, str] = THINK_TAGS) -> str:
    """`text` without a reasoning model's thinking: what it answered after thinking."""
    return split_thinking(text, tags)[1]


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
    text = _strip_markup(str(answer)).strip()
    if task == "math":
        gold, expected = _math_answer(split_reference(text)[1]), "a number or math expression"
    elif task == "multiple_choice":
        gold, expected = _parse_choice(text, choices), "a letter or the text of a choice"
    elif task == "yes_no":
        gold, expected = _parse_yes_no(text), "yes/no or true/false"
    else:
        raise ValueError(f"unknown task type {task!r} (expected {', '.join(TASKS)})")
    if not gold:
        among = f" among choices {choices}" if choices else ""
        raise ValueError(
            f"cannot normalise gold answer {answer!r} for task {task!r}{among} (need {expected})"
        )
    return gold


def extract_answer(text: str, task: str, choices: list[str] | None = None) -> str | None:
    """The final answer of a model output, normalised like the gold answers, or None."""
    parse = {
        "math": _math_span,
        "multiple_choice": lambda span: _parse_choice(span, choices),
        "yes_no": _parse_yes_no,
    }.get(task)
    if parse is None:
        raise ValueError(f"unknown task type {task!r} (expected {', '.join(TASKS)})")
    text = _strip_markup(strip_thinking(text))
    stated, rejected = _stated_answers(text, keep_sign=task == "math")
    for span in stated:
        if answer := parse(span):
            return answer
    boxed = _last_boxed(text)
    if boxed is not None and (answer := parse(boxed)):
        return answer
    if task == "math":
        return _last_number(text, rejected)
    verdict = _VERDICT_RE.match(text) if task == "yes_no" else None
    return _YES_NO[verdict.group(1).lower()] if verdict else None


def _stated_answers(text: str, keep_sign: bool) -> tuple[list[str], list[str]]:
    """(the text after each answer phrase up to the line end, last first; those negated or
    retracted). A doubted one ('12?') is in neither."""
    stated, rejected = [], []
    for match in reversed(list(_ANSWER_RE.finditer(text))):
        after = _LEADING_TAGS_RE.sub("", text[match.end() : match.end() + _WINDOW])
        after = after.lstrip(" \t:") if keep_sign else after.lstrip(" \t:._-")
        span, end = after.split("\n", 1)[0], _SENTENCE_RE.search(after)
        sentence, rest = (after[: end.end()], after[end.end() :]) if end else (after, "")
        if _NEGATED_RE.match(span) or _RETRACTED_RE.match(span) or _RETRACTED_NEXT_RE.match(rest):
            rejected.append(span)
        elif not sentence.rstrip().endswith("?"):
            stated.append(span)
    return stated, rejected


def _last_number(text: str, rejected: list[str]) -> str | None:
    """The last number of `text` that the text does not reject ('not 11', a retracted answer)."""
    text = text.replace("−", "-")
    refused = {_canonical_number(m.group(1)) for m in _REFUSED_NUMBER_RE.finditer(text)}
    refused |= {_canonical_number(n.group(1)) for s in rejected if (n := _LEAD_NUMBER_RE.match(s))}
    for number in reversed(_NUMBER_RE.findall(text)):
        if (value := _canonical_number(number)) not in refused:
            return value
    return None


def is_correct(predicted: str | None, gold: str, task: str) -> bool:
    """Whether an extracted answer matches a normalised gold answer."""
    if predicted is None:
        return False
    if task != "math":
        return predicted == gold
    pred, ref = _math_answer(predicted), _math_answer(gold)
    if pred is None or ref is None:
        return False
    pred_value, ref_value = _exact(pred), _exact(ref)
    if pred_value is not None and ref_value is not None:
        return (
            pred_value == ref_value
            or _approximates(pred, ref_value)
            or _approximates(ref, pred_value)
        )
    return pred == ref or _math_verify_equal(ref, pred)


def _strip_markup(text: str) -> str:
    return _MARKUP_RE.sub("", _EMPHASIS_RE.sub(r"\1", text))


def _canonical_number(number: str) -> str:
    """'1,234.50' -> '1234.5', '145.0' -> '145'; fractions and integers unchanged."""
    number = number.replace(",", "")
    if "." in number and "/" not in number:
        number = number.rstrip("0").rstrip(".") or "0"
    return "0" if number in ("-0", "-", "") else number


def _math_answer(text: str) -> str | None:
    """`text` as a math answer (see the module rules): a canonical number or LaTeX, else None."""
    text = _NOISE_RE.sub("", text.replace("−", "-")).strip().rstrip(".").strip()
    if _FULL_NUMBER_RE.fullmatch(text):
        return _canonical_number(text)
    if not re.search(r"\d|\\pi\b", text) or re.search(
        r"[A-Za-z]{2,}", _LATEX_MARKUP_RE.sub(" ", text)
    ):
        return None
    return text if _finite(text) else None


def _exact(text: str) -> Fraction | None:
    """The exact value of a number, a/b or \\frac{a}{b}; None for anything else."""
    fraction = _LATEX_FRACTION_RE.fullmatch(text)
    if fraction:
        text = f"{fraction.group(1)}{fraction.group(2)}/{fraction.group(3)}".replace("--", "")
    try:
        return Fraction(text.replace(",", "")) if _FULL_NUMBER_RE.fullmatch(text) else None
    except (ValueError, ZeroDivisionError):
        return None


def _approximates(decimal: str, value: Fraction) -> bool:
    """A decimal with 2+ places within one unit of its last place of a non-terminating value."""
    places = len(decimal.partition(".")[2]) if _FULL_NUMBER_RE.fullmatch(decimal) else 0
    denominator = value.denominator
    for factor in (2, 5):
        while denominator % factor == 0:
            denominator //= factor
    if places < 2 or "/" in decimal or denominator == 1:
        return False
    return abs(Fraction(decimal) - value) < Fraction(1, 10**places)


def _math_span(span: str) -> str | None:
    """The answer in the text after 'The answer is' or inside \\boxed{}: a number or LaTeX."""
    if _BOXED_RE.search(span) and (inner := _last_boxed(span)) is not None:
        span = inner
    cleaned = _NOISE_RE.sub("", span.replace("−", "-"))
    cleaned = _NOTE_RE.sub("", _SENTENCE_END_RE.split(cleaned, maxsplit=1)[0]).strip()
    if re.search(r"[\\^{]", cleaned):  # LaTeX: the whole expression, right of any '='
        return _math_answer(cleaned.rsplit("=", 1)[-1])
    number = _NUMBER_RE.search(_LEADING_EQUATION_RE.sub("", cleaned))  # "81 - 60 = 21", "x = 5"
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
    """The letter `text` states: a choice's own text, a lone letter ('(C)', 'C) 21', 'c'), or
    the choice with the same number."""
    text = _LATEX_MARKUP_RE.sub("", text).strip()
    if choices and (letter := _choice_by_text(text, choices)):
        return letter
    letter = _stated_letter(text)
    if letter and (choices is None or ord(letter) - ord("A") < len(choices)):
        return letter
    return _choice_by_number(text, choices) if choices else None


def _stated_letter(text: str) -> str | None:
    """The letter at the start of `text` when it stands alone, not 'A tundra' or 'B and D'."""
    match = _LETTER_RE.match(text)
    if not match:
        return None
    rest = text[match.end() :]
    if _MORE_LETTERS_RE.match(rest):
        return None
    bare = match.group(2) in ("A", "I") and match.start(2) == 0
    return (
        None if bare and _PROSE_AFTER_RE.match(rest) else next(filter(None, match.groups())).upper()
    )


def _choice_by_text(text: str, choices: list[str]) -> str | None:
    """The letter of the choice whose text `text` (or its first clause) states."""
    keys = {_text_key(text), _text_key(_CLAUSE_END_RE.split(text, 1)[0])} - {""}
    texts = [_text_key(_CHOICE_PREFIX_RE.sub("", str(c), count=1)) for c in choices]
    return next((chr(ord("A") + i) for i, key in enumerate(texts) if key in keys), None)


def _choice_by_number(text: str, choices: list[str]) -> str | None:
    """The letter of the choice that is the first number of `text` (its first clause)."""
    number = _NUMBER_RE.search(_CLAUSE_END_RE.split(text.replace("$", ""), 1)[0])
    if number is None:
        return None
    values = [
        _exact(_math_answer(_CHOICE_PREFIX_RE.sub("", str(c), count=1)) or "") for c in choices
    ]
    value = _exact(_canonical_number(number.group()))
    return next((chr(ord("A") + i) for i, v in enumerate(values) if v == value), None)


def _text_key(text: str) -> str:
    text = re.sub(r"\s+", " ", text.replace("$", "").replace(",", "")).strip(" .!").lower()
    return _ARTICLE_RE.sub("", text)


def _finite(expression: str) -> bool:
    """Whether math-verify parses `expression` into a value that is not infinite or NaN."""
    parsed = _parsed(expression)
    return bool(parsed) and not isinstance(parsed[0], str) and str(parsed[0]) not in _INFINITE


def _parsed(expression: str) -> list:
    return _math_verify("parse", f"${expression}$", parsing_timeout=_timeout()) or []


def _math_verify_equal(gold: str, predicted: str) -> bool:
    """Symbolic equivalence through math-verify; any failure or timeout counts as not equal."""
    return bool(
        _math_verify("verify", _parsed(gold), _parsed(predicted), timeout_seconds=_timeout())
    )


def _math_verify(function: str, *args, **kwargs):
    """A math-verify function's result, or None when it fails or times out."""
    import math_verify
    from math_verify.errors import TimeoutException

    try:
        return getattr(math_verify, function)(*args, **kwargs)
    except (Exception, TimeoutException):
        return None


def _timeout() -> int | None:
    # math-verify times out through signal.alarm, which only works in the main thread.
    return 5 if threading.current_thread() is threading.main_thread() else None
