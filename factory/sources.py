"""Problems from anywhere: a Hub dataset, local files, the paper's alpaca JSON, or reasoning-gym.

Every source becomes a list of `Problem`s per split (`train`, and `test` when there is one), with
gold answers normalised for the recipe's task type. A bad row is an error naming file and row.
"""

from __future__ import annotations

import csv
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from factory.answers import extract_answer, normalize_gold, split_reference
from factory.recipe import AlpacaSource, DatasetSpec, GymSource, HubSource, Source

ANSWER_PHRASE = re.compile(r"the\s+answer\s+is", re.IGNORECASE)


class SourceError(ValueError):
    """A source that cannot be read, with where and why."""


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str
    choices: list[str] | None = None
    reference_rationale: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_problems(source: Source, dataset: DatasetSpec) -> dict[str, list[Problem]]:
    """All problems of the recipe, by split; the test split is carved out of train when asked."""
    splits = {"train": source.train, "test": source.test}
    problems = {
        split: _problems(_rows(source, split, where), source, split)
        for split, where in splits.items()
        if where is not None
    }
    if (
        "test" in problems
    ):  # generated splits may overlap; a test problem seen in training is no test
        train_questions = {p.question for p in problems["train"]}
        problems["test"] = [p for p in problems["test"] if p.question not in train_questions]
    elif dataset.test_size:
        problems["train"], problems["test"] = _carve(problems["train"], dataset)
    return problems


def _rows(source: Source, split: str, where: str | int) -> list[tuple[str, dict]]:
    """(location, raw row) pairs; the location names file and row for error messages."""
    if isinstance(source, HubSource):
        return _hub_rows(source, str(where))
    if isinstance(source, GymSource):
        return _gym_rows(source, split, int(where))
    rows = read_table(Path(str(where)))
    if isinstance(source, AlpacaSource):
        rows = [_from_alpaca(row, f"{where} row {i}", source.task) for i, row in enumerate(rows, 1)]
    return [(f"{where} row {i}", row) for i, row in enumerate(rows, 1)]


def read_table(path: Path) -> list[dict]:
    """Rows of a local .jsonl, .json (a list of objects), .csv or .parquet file."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv", ".parquet"):
        raise SourceError(
            f"{path}: unsupported file type {suffix!r} (use jsonl, json, csv, parquet)"
        )
    rows = _read_rows(path, suffix)
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise SourceError(f"{path} row {i}: expected an object, got {type(row).__name__}")
    return rows


def _read_rows(path: Path, suffix: str) -> list:
    if suffix == ".csv":
        with path.open(newline="") as f:
            return list(csv.DictReader(f))
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except pa.ArrowException as err:
            raise SourceError(f"{path}: cannot read parquet: {err}") from None
    if suffix == ".json":
        data = _parse_json(path.read_text(), path, 0)
        if not isinstance(data, list):
            raise SourceError(f"{path}: expected a JSON list of objects")
        return data
    with path.open() as f:
        return [_parse_json(line, path, n) for n, line in enumerate(f, 1) if line.strip()]


def _parse_json(text: str, path: Path, line: int):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SourceError(f"{path}: invalid JSON at line {line or err.lineno}: {err.msg}") from None


def _hub_rows(source: HubSource, split: str) -> list[tuple[str, dict]]:
    from datasets import load_dataset

    try:
        ds = load_dataset(source.dataset, source.subset, split=split, revision=source.revision)
    except Exception as err:
        raise SourceError(f"Hub dataset {source.dataset!r} split {split!r}: {err}") from None
    return [(f"{source.dataset}[{split}] row {i}", row) for i, row in enumerate(ds, 1)]


def _gym_rows(source: GymSource, split: str, size: int) -> list[tuple[str, dict]]:
    import reasoning_gym

    seed = source.seed if split == "train" else source.seed + 1_000_003
    try:
        data = reasoning_gym.create_dataset(source.dataset, size=size, seed=seed, **source.options)
    except Exception as err:
        raise SourceError(f"reasoning-gym dataset {source.dataset!r}: {err}") from None
    return [
        (f"reasoning-gym {source.dataset}[{split}] item {i}", {"id": f"{split}-{i:05d}", **entry})
        for i, entry in enumerate(data, 1)
    ]


def alpaca_question(row: dict, where: str) -> str:
    """The question of a row in the paper's LLaMA-Factory layout: `instruction` (+ `input`)."""
    if "instruction" not in row or "output" not in row:
        raise SourceError(f"{where}: an alpaca row needs `instruction` and `output`")
    return "\n".join(p for p in (row["instruction"], row.get("input")) if p)


def _from_alpaca(row: dict, where: str, task: str) -> dict:
    """An alpaca row whose `output` ends in the answer line; an output that is only the answer
    has no rationale."""
    question = alpaca_question(row, where)
    output = str(row["output"]).strip()
    phrases = list(ANSWER_PHRASE.finditer(output))
    if not phrases:
        return {"question": question, "answer": output, "rationale": None}
    rationale = output[: phrases[-1].start()].strip() or None
    return {
        "question": question,
        "answer": extract_answer(output, task) or output,
        "rationale": rationale,
    }


def _problems(rows: list[tuple[str, dict]], source: Source, split: str) -> list[Problem]:
    problems, seen = [], set()
    for index, (where, row) in enumerate(rows):
        if source.limit and len(problems) >= source.limit:
            break
        problem = _problem(row, index, split, source, where)
        if problem.id in seen:
            raise SourceError(f"{where}: duplicate problem id {problem.id!r}")
        seen.add(problem.id)
        problems.append(problem)
    return problems


def _problem(row: dict, index: int, split: str, source: Source, where: str) -> Problem:
    columns = source.columns
    if isinstance(source, AlpacaSource | GymSource):
        columns = columns.model_copy(update={"rationale": columns.rationale or "rationale"})
    question, answer = _field(row, columns.question, where), _field(row, columns.answer, where)
    choices = _field(row, columns.choices, where) if columns.choices else None
    if isinstance(choices, str):
        try:
            choices = json.loads(choices) if choices.startswith("[") else choices.split("\n")
        except json.JSONDecodeError as err:
            raise SourceError(
                f"{where}: column {columns.choices!r}: invalid JSON list: {err.msg}"
            ) from None
    rationale = _lookup(row, columns.rationale) if columns.rationale else None
    answer = str(answer)
    if source.task == "math" and "####" in answer:
        gsm_rationale, answer = split_reference(answer)
        rationale = rationale or gsm_rationale
    elif rationale and "####" in str(rationale):
        rationale = split_reference(str(rationale))[0]
    try:
        gold = normalize_gold(answer, source.task, choices)
    except ValueError as err:
        raise SourceError(f"{where}: column {columns.answer!r}: {err}") from None
    default_id = row.get("id") or f"{split}-{index + 1:05d}"
    problem_id = str(_field(row, columns.id, where) if columns.id else default_id)
    return Problem(problem_id, str(question).strip(), gold, choices, _text(rationale))


def _field(row: dict, column: str, where: str) -> Any:
    value = _lookup(row, column)
    if value is None:
        raise SourceError(f"{where}: no column {column!r} (columns: {', '.join(map(str, row))})")
    return value


def _lookup(row: dict, column: str) -> Any:
    """A column, or a nested field as `metadata.answer_cot`."""
    value: Any = row
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _text(value: Any) -> str | None:
    return str(value).strip() or None if value is not None else None


def _carve(train: list[Problem], dataset: DatasetSpec) -> tuple[list[Problem], list[Problem]]:
    size = dataset.test_size
    n_test = int(round(len(train) * size)) if isinstance(size, float) and size < 1 else int(size)
    if not 0 < n_test < len(train):
        raise SourceError(f"dataset.test_size={size} leaves no train or no test problems")
    order = list(range(len(train)))
    random.Random(dataset.seed).shuffle(order)
    test_ids = set(order[:n_test])
    return (
        [p for i, p in enumerate(train) if i not in test_ids],
        [p for i, p in enumerate(train) if i in test_ids],
    )
