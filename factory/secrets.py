"""Secret values (API keys, Hub tokens) and their redaction from every message, log and file.

A secret is the value of a watched environment variable: the Hub token variables and the
conventional `OPENAI_API_KEY` from the start (before any recipe is read), plus each teacher's
`api_key_env` once the teacher is made (`watch`). Values are read from the environment at each
call, so a variable set later is still covered. Values shorter than `MIN_LENGTH` are left alone:
they would redact ordinary words.
"""

from __future__ import annotations

import logging
import os
import traceback

HF_TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
MIN_LENGTH = 8

_watched: dict[str, None] = dict.fromkeys((*HF_TOKEN_VARS, "OPENAI_API_KEY"))


def watch(*names: str | None) -> None:
    """Treat the values of these environment variables as secrets too (`None` is skipped)."""
    _watched.update(dict.fromkeys(name for name in names if name))


def secret_values() -> dict[str, str]:
    """Each secret value set in the environment, with the first variable that holds it."""
    values: dict[str, str] = {}
    for name in _watched:
        value = os.environ.get(name, "").strip()
        if len(value) >= MIN_LENGTH:
            values.setdefault(value, name)
    return values


def redact(text: str) -> str:
    """`text` with every secret value replaced by `[redacted $NAME]`, longest value first."""
    for value, name in sorted(secret_values().items(), key=lambda item: -len(item[0])):
        text = text.replace(value, f"[redacted ${name}]")
    return text


def format_exception(err: BaseException) -> str:
    """The redacted traceback of `err`, chained causes included, as Python would print it."""
    return redact("".join(traceback.format_exception(err)))


class RedactingFilter(logging.Filter):
    """Redacts each record's message (with its arguments), traceback and stack before any
    handler formats it. Install it on handlers: a logger's filter misses propagated records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not secret_values():
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit: keep both, redacted
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add one `RedactingFilter` to every handler of `logger` (default: the root logger)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
