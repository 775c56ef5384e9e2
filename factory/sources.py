"""Problems from anywhere: a Hub dataset, local files, the paper's alpaca JSON, or reasoning-gym.

Every source becomes a list of `Problem`s per split (`train`, and `test` when there is one), with
gold answers normalised for the recipe's task type. A bad row (null or empty question, a question
over `MAX_QUESTION_CHARS`, a null, non-scalar or unreadable answer, a ragged CSV row, a duplicate
id) is a `RowError` naming file and row, or, with `source.bad_rows: skip`, skipped and counted in
`LoadedProblems.skipped`, as are test problems dropped because train has them too.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from factory.answers import extract_answer, normalize_gold, split_reference
from factory.choices import split_options
from factory.recipe import AlpacaSource, Columns, DatasetSpec, GymSource, HubSource, Source
from factory.tables import (
    MAX_QUESTION_CHARS,
    RowError,
    SourceError,
    answer_text,
    cell,
    choice_list,
    lookup,
    question_text,
    read_table,
    table_rows,
)

__all__ = [
    "MAX_QUESTION_CHARS",
    "LoadedProblems",
    "Problem",
    "RowError",
    "SourceError",
    "load_problems",
    "read_table",
]

ANSWER_PHRASE = re.compile(r"the\s+answer\s+is", re.IGNORECASE)
IN_TRAIN = "also in train"  # the skip reason of a test problem that train has too


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str
    choices: list[str] | None = None
    reference_rationale: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LoadedProblems(dict[str, list[Problem]]):
    """Problems by split, plus `skipped`: {split: {reason: count}} of the rows left out (bad rows
    under `bad_rows: skip`, and under `test`, `IN_TRAIN` problems); every loaded split is a key."""

    def __init__(self, splits: dict[str, list[Problem]], skipped: dict[str, dict[str, int]]):
        super().__init__(splits)
        self.skipped = skipped


def load_problems(source: Source, dataset: DatasetSpec) -> LoadedProblems:
    """All problems of the recipe, by split; the test split is carved out of train when asked."""
    problems, skipped = {}, {}
    for split, where in {"train": source.train, "test": source.test}.items():
        if where is None:
            continue
        counts: Counter[str] = Counter()
        try:
            problems[split] = _problems(_rows(source, split, where), source, split, counts)
            _require_problems(problems[split], _label(source, split, where), counts)
        except SourceError as err:
            err.key = err.key or ("source", split)
            raise
        skipped[split] = dict(counts)
    if "test" in problems:  # generated splits may overlap; a problem seen in training is no test
        label = _label(source, "test", source.test)
        problems["test"] = _without_train(problems, skipped["test"], label)
    elif dataset.test_size:
        problems["train"], problems["test"] = _carve(problems["train"], dataset)
        skipped["test"] = {}
    return LoadedProblems(problems, skipped)


def _label(source: Source, split: str, where: str | int) -> str:
    if isinstance(source, HubSource):
        return f"Hub dataset {source.dataset!r} split {where!r}"
    if isinstance(source, GymSource):
        return f"reasoning-gym {source.dataset!r} {split} split"
    return str(where)


def _require_problems(problems: list[Problem], label: str, skipped: Counter) -> None:
    if problems:
        return
    if not skipped:
        raise SourceError(f"{label}: no rows, so no problems")
    reasons = ", ".join(f"{n} {reason}" for reason, n in skipped.most_common())
    raise SourceError(f"{label}: every row was skipped ({reasons}), so no problems")


def _without_train(problems: dict, skipped: dict[str, int], label: str) -> list[Problem]:
    """The test problems that are not in train; none left is an error."""
    seen = {_problem_key(p) for p in problems["train"]}
    test = [p for p in problems["test"] if _problem_key(p) not in seen]
    if dropped := len(problems["test"]) - len(test):
        skipped[IN_TRAIN] = dropped
    if not test:
        raise SourceError(
            f"{label}: all {dropped} test problems are also in train, so no test problem is left",
            key=("source", "test"),
        )
    return test


def _problem_key(problem: Problem) -> tuple:
    return " ".join(problem.question.split()), tuple(problem.choices or ())


def _rows(source: Source, split: str, where: str | int) -> list[tuple[str, dict | RowError]]:
    """(location, raw row) pairs; the location names file and row for error messages."""
    if isinstance(source, HubSource):
        return _hub_rows(source, str(where))
    if isinstance(source, GymSource):
        return _gym_rows(source, split, int(where))
    return [(f"{where} row {i}", row) for i, row in enumerate(table_rows(Path(str(where))), 1)]


def _hub_rows(source: HubSource, split: str) -> list[tuple[str, dict]]:
    from datasets import load_dataset

    try:
        ds = load_dataset(source.dataset, source.subset, split=split, revision=source.revision)
    except Exception as err:
        message = f"Hub dataset {source.dataset!r} split {split!r}: {err}"
        raise SourceError(message, key=("source", "dataset")) from None
    return [(f"{source.dataset}[{split}] row {i}", row) for i, row in enumerate(ds, 1)]


def _gym_rows(source: GymSource, split: str, size: int) -> list[tuple[str, dict]]:
    import reasoning_gym

    seed = source.seed if split == "train" else source.seed + 1_000_003
    try:
        data = reasoning_gym.create_dataset(source.dataset, size=size, seed=seed, **source.options)
    except Exception as err:
        message = f"reasoning-gym dataset {source.dataset!r}: {err}"
        raise SourceError(message, key=("source", "dataset")) from None
    return [
        (f"reasoning-gym {source.dataset}[{split}] item {i}", {"id": f"{split}-{i:05d}", **entry})
        for i, entry in enumerate(data, 1)
    ]


def alpaca_question(row: dict, where: str) -> str:
    """The question of a row in the paper's LLaMA-Factory layout: `instruction` (+ `input`)."""
    if "instruction" not in row or "output" not in row:
        raise RowError(f"{where}: an alpaca row needs `instruction` and `output`", "missing column")
    return "\n".join(p for p in (cell(row, "instruction", where), row.get("input")) if p)


def _from_alpaca(row: dict, where: str, task: str) -> dict:
    """An alpaca row whose `output` ends in the answer line; an output that is only the answer
    has no rationale."""
    question = alpaca_question(row, where)
    output = answer_text(cell(row, "output", where), "output", where, task).strip()
    phrases = list(ANSWER_PHRASE.finditer(output))
    if not phrases:
        return {"question": question, "answer": output, "rationale": None}
    options = split_options(question) if task == "multiple_choice" else None
    return {
        "question": question,
        "answer": extract_answer(output, task, options and options[1]) or output,
        "rationale": output[: phrases[-1].start()].strip() or None,
    }


def _problems(rows: list, source: Source, split: str, skipped: Counter) -> list[Problem]:
    """The split's problems; a bad row raises, or is counted in `skipped` by reason."""
    problems, seen = [], set()
    for index, (where, row) in enumerate(rows):
        if source.limit and len(problems) >= source.limit:
            break
        try:
            problem = _problem(row, index, split, source, where)
            if problem.id in seen:
                raise RowError(f"{where}: duplicate problem id {problem.id!r}", "duplicate id")
        except RowError as err:
            if source.bad_rows == "error":
                raise
            skipped[err.reason] += 1
            continue
        seen.add(problem.id)
        problems.append(problem)
    return problems


def _problem(row: dict | RowError, index: int, split: str, source: Source, where: str) -> Problem:
    if isinstance(row, RowError):
        raise row
    columns = source.columns
    if isinstance(source, AlpacaSource):
        row = _from_alpaca(row, where, source.task)
    if isinstance(source, AlpacaSource | GymSource):
        columns = columns.model_copy(update={"rationale": columns.rationale or "rationale"})
    question = question_text(cell(row, columns.question, where), columns.question, where)
    choices = choice_list(row, columns.choices, where) if columns.choices else None
    if source.task == "multiple_choice" and choices is None and (found := split_options(question)):
        question, choices = found  # options written in the question: "A. bank\nB. park"
    gold, rationale = _gold(row, columns, where, source.task, choices)
    default_id = row.get("id") or f"{split}-{index + 1:05d}"
    problem_id = str(cell(row, columns.id, where) if columns.id else default_id)
    return Problem(problem_id, question, gold, choices, rationale)


def _gold(
    row: dict, columns: Columns, where: str, task: str, choices: list[str] | None
) -> tuple[str, str | None]:
    """The normalised gold answer and the reference rationale (a GSM8K '####' answer has both)."""
    answer = answer_text(cell(row, columns.answer, where), columns.answer, where, task)
    rationale = lookup(row, columns.rationale) if columns.rationale else None
    if task == "math" and "####" in answer:
        gsm_rationale, answer = split_reference(answer)
        rationale = rationale or gsm_rationale
    elif rationale and "####" in str(rationale):
        rationale = split_reference(str(rationale))[0]
    try:
        return normalize_gold(answer, task, choices), _text(rationale)
    except ValueError as err:
        raise RowError(f"{where}: column {columns.answer!r}: {err}", "invalid answer") from None


def _text(value: Any) -> str | None:
    return str(value).strip() or None if value is not None else None


def _carve(train: list[Problem], dataset: DatasetSpec) -> tuple[list[Problem], list[Problem]]:
    size = dataset.test_size
    n_test = int(round(len(train) * size)) if isinstance(size, float) and size < 1 else int(size)
    if not 0 < n_test < len(train):
        message = f"dataset.test_size={size} leaves no train or no test problems"
        raise SourceError(message, key=("dataset", "test_size"))
    order = list(range(len(train)))
    random.Random(dataset.seed).shuffle(order)
    test_ids = set(order[:n_test])
    return (
        [p for i, p in enumerate(train) if i not in test_ids],
        [p for i, p in enumerate(train) if i in test_ids],
    )


def read_problems(path: Path) -> list[Problem]:
    """Problems as the run folder keeps them: one JSON object per line."""
    with path.open(encoding="utf-8") as f:
        return [Problem(**json.loads(line)) for line in f if line.strip()]


def eval_questions(eval_set) -> list[str]:
    """The questions of an evaluation set (`cot.decontaminate.against`): a local file's rows or
    a Hub dataset split, the column it names."""
    where = eval_set.files or f"Hub dataset {eval_set.hub!r} split {eval_set.split!r}"
    if eval_set.files:
        rows = read_table(Path(eval_set.files))
    else:
        from datasets import load_dataset

        try:
            rows = load_dataset(eval_set.hub, eval_set.subset, split=eval_set.split)
        except Exception as err:
            raise SourceError(f"{where}: {str(err).splitlines()[0]}") from None
    questions = [row.get(eval_set.column) for row in rows]
    if not questions or any(not isinstance(q, str) for q in questions):
        raise SourceError(f"{where}: column {eval_set.column!r} must hold a question in every row")
    return questions
