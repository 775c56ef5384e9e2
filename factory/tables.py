"""Rows of local data files (.jsonl, .json, .csv, .parquet), checks on their cells, and the
errors sources raise.

A file that cannot be read at all (missing, not UTF-8, not JSON) is a `SourceError` naming the
file and line; a row that cannot be used (a ragged CSV row, a JSON value that is no object, a
missing or null cell, a question that is empty or over `MAX_QUESTION_CHARS`, an answer that is no
single value) is a `RowError` naming the file and row, which a source may skip and count instead.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
MAX_QUESTION_CHARS = 20_000  # longer is no word problem: a corrupt cell or a pasted document
_MISSING = object()


class SourceError(ValueError):
    """A source that cannot be read, with where and why. `key` is the recipe key path that
    points at what failed, e.g. ("source", "train"), when known, for a `file:line` prefix."""

    def __init__(self, message: str, key: tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.key = key


class RowError(SourceError):
    """One row that cannot be a problem; `reason` ('null answer', 'ragged row') counts skips."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def read_table(path: Path) -> list[dict]:
    """Rows of a local .jsonl, .json (a list of objects), .csv or .parquet file."""
    rows = table_rows(path)
    for row in rows:
        if isinstance(row, RowError):
            raise row
    return rows


def table_rows(path: Path) -> list[dict | RowError]:
    """Like `read_table`, but a row that is not a proper record comes as its `RowError`."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise SourceError(
            f"{path}: unsupported file type {suffix!r} (use jsonl, json, csv, parquet)"
        )
    if suffix == ".parquet":
        return _parquet_rows(path)
    text = _utf8_text(path)
    if suffix == ".csv":
        return _csv_rows(path, text)
    if suffix == ".json":
        data = _parse_json(text, path, 0)
        if not isinstance(data, list):
            raise SourceError(f"{path}: expected a JSON list of objects")
    else:
        lines = enumerate(text.splitlines(), 1)
        data = [_parse_json(line, path, n) for n, line in lines if line.strip()]
    return [_object(row, f"{path} row {i}") for i, row in enumerate(data, 1)]


def _utf8_text(path: Path) -> str:
    """The file's text; a clear error for UTF-16, binary data or another encoding."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SourceError(f"{path}: UTF-16 text; save the file as UTF-8")
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise SourceError(f"{path} line {line}: NUL byte: binary data or UTF-16, not UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise SourceError(
            f"{path} line {line}: byte 0x{data[err.start]:02x} is not UTF-8 "
            "(latin-1 or another encoding?); save the file as UTF-8"
        ) from None


def _csv_rows(path: Path, text: str) -> list[dict | RowError]:
    """Records under the header; a row with more or fewer fields than the header is an error."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[dict | RowError] = []
    try:
        header = next(reader, None)
        for fields in reader:
            if not fields:
                continue  # a blank line
            where = f"{path} row {len(rows) + 1} (line {reader.line_num})"
            rows.append(
                dict(zip(header, fields, strict=True))
                if len(fields) == len(header)
                else RowError(
                    f"{where}: {len(fields)} fields, the header has {len(header)}", "ragged row"
                )
            )
    except csv.Error as err:
        raise SourceError(f"{path} line {reader.line_num}: cannot parse CSV: {err}") from None
    return rows


def _parquet_rows(path: Path) -> list[dict | RowError]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except pa.ArrowException as err:
        raise SourceError(f"{path}: cannot read parquet: {err}") from None


def _parse_json(text: str, path: Path, line: int):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SourceError(f"{path}: invalid JSON at line {line or err.lineno}: {err.msg}") from None


def _object(row, where: str) -> dict | RowError:
    if isinstance(row, dict):
        return row
    return RowError(f"{where}: expected an object, got {type(row).__name__}", "not an object")


# --- cells -----------------------------------------------------------------------------------


def question_text(value: Any, column: str, where: str) -> str:
    """A question: text, not blank, at most MAX_QUESTION_CHARS characters."""
    if not isinstance(value, str):
        raise RowError(
            f"{where}: column {column!r} holds {_kind(value)}, not text", "question not text"
        )
    question = value.strip()
    if not question:
        raise RowError(f"{where}: column {column!r} is empty", "empty question")
    if len(question) > MAX_QUESTION_CHARS:
        raise RowError(
            f"{where}: column {column!r} is {len(question):,} characters long "
            f"(limit {MAX_QUESTION_CHARS:,})",
            "question too long",
        )
    return question


def answer_text(value: Any, column: str, where: str, task: str) -> str:
    """An answer cell as text: a string or a number (a boolean only for yes/no)."""
    if isinstance(value, bool) and task != "yes_no":
        raise RowError(
            f"{where}: column {column!r} holds a boolean ({value}), not a {task} answer",
            "boolean answer",
        )
    if not isinstance(value, str | int | float):
        raise RowError(
            f"{where}: column {column!r} holds {_kind(value)}, not a single answer",
            "non-scalar answer",
        )
    return str(value)


def choice_list(row: dict, column: str, where: str) -> list[str]:
    """The choices cell: a list, a JSON list in a string, or one choice per line."""
    choices = cell(row, column, where)
    if isinstance(choices, str):
        try:
            choices = json.loads(choices) if choices.startswith("[") else choices.split("\n")
        except json.JSONDecodeError as err:
            message = f"{where}: column {column!r}: invalid JSON list: {err.msg}"
            raise RowError(message, "invalid choices") from None
    if not isinstance(choices, list) or not all(isinstance(c, str | int | float) for c in choices):
        message = f"{where}: column {column!r} holds {_kind(choices)}, not a list of choices"
        raise RowError(message, "invalid choices")
    return [str(choice) for choice in choices]


def cell(row: dict, column: str, where: str) -> Any:
    """A column's value; a missing column, a null and a NaN are errors that say which."""
    value = lookup(row, column, _MISSING)
    if value is _MISSING:
        columns = ", ".join(map(str, row))
        raise RowError(f"{where}: no column {column!r} (columns: {columns})", "missing column")
    if value is None or isinstance(value, float) and math.isnan(value):
        raise RowError(f"{where}: column {column!r} is null", f"null {column}")
    return value


def lookup(row: dict, column: str, default: Any = None) -> Any:
    """A column, or a nested field as `metadata.answer_cot`."""
    value: Any = row
    for part in column.split("."):
        if not isinstance(value, dict) or part not in value:
            return default
        value = value[part]
    return value


def _kind(value: Any) -> str:
    """'a list ([1, 2])', 'an object ({"v": 5})': what a cell holds, briefly."""
    kind = _KINDS.get(type(value).__name__, f"a {type(value).__name__}")
    shown = json.dumps(value, default=str)
    return f"{kind} ({shown if len(shown) <= 40 else shown[:37] + '...'})"


_KINDS = {
    "list": "a list",
    "dict": "an object",
    "int": "a number",
    "float": "a number",
    "bool": "a boolean",
}
