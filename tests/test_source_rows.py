"""Hostile rows and files in sources: each is a one-line error naming file and row, or, with
`bad_rows: skip`, skipped and counted; test problems that train has are counted; options written
inside a multiple-choice question become its choices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from factory.prompts import render_question
from factory.recipe import AlpacaSource, Columns, DatasetSpec, FilesSource, HubSource
from factory.sources import (
    IN_TRAIN,
    MAX_QUESTION_CHARS,
    LoadedProblems,
    Problem,
    RowError,
    SourceError,
    load_problems,
    read_table,
)

DATASET = DatasetSpec(repo_id="local/x")
GOOD = {"question": "A box holds 6 eggs. How many eggs are in 4 boxes?", "answer": "24"}


def files(path: Path, test: Path | None = None, **kwargs) -> FilesSource:
    return FilesSource(kind="files", train=str(path), test=str(test) if test else None, **kwargs)


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def error(source, dataset: DatasetSpec = DATASET) -> SourceError:
    with pytest.raises(SourceError) as info:
        load_problems(source, dataset)
    assert "\n" not in str(info.value)
    return info.value


# ---------------------------------------------------------------------------------------------
# null, empty and oversized questions


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"question": None, "answer": "3"}, "column 'question' is null"),
        (
            {"question": "How many legs do 3 spiders have?", "answer": None},
            "column 'answer' is null",
        ),
        ({"question": "", "answer": "3"}, "column 'question' is empty"),
        ({"question": "  \n\t ", "answer": "3"}, "column 'question' is empty"),
        ({"question": 17, "answer": "3"}, "column 'question' holds a number (17), not text"),
        (
            {"question": ["Q?"], "answer": "3"},
            "column 'question' holds a list ([\"Q?\"]), not text",
        ),
    ],
)
def test_null_empty_and_non_text_questions(tmp_path, bad, message):
    path = jsonl(tmp_path / "train.jsonl", [GOOD, bad])
    assert str(error(files(path))) == f"{path} row 2: {message}"


def test_null_is_not_reported_as_a_missing_column(tmp_path):
    path = jsonl(tmp_path / "train.jsonl", [{"question": "How old is Ann?"}])
    assert str(error(files(path))) == f"{path} row 1: no column 'answer' (columns: question)"


def test_nan_from_parquet_is_null(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "train.parquet"
    rows = [{"question": "Half of 9?", "answer": 4.5}, {"question": "Twice 8?", "answer": None}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert str(error(files(path))) == f"{path} row 2: column 'answer' is null"


def test_question_length_is_bounded(tmp_path):
    at_limit = {"question": "x" * (MAX_QUESTION_CHARS - 1) + "?", "answer": "1"}
    huge = {"question": "How many? " * 1_048_576, "answer": "1"}
    path = jsonl(tmp_path / "train.jsonl", [at_limit, huge])

    message = str(error(files(path)))
    assert message == (
        f"{path} row 2: column 'question' is 10,485,759 characters long (limit 20,000)"
    )
    assert len(load_problems(files(path, limit=1), DATASET)["train"][0].question) == 20_000


# ---------------------------------------------------------------------------------------------
# answers that are not one scalar


@pytest.mark.parametrize(
    ("answer", "task", "message"),
    [
        ([1, 2], "math", "holds a list ([1, 2]), not a single answer"),
        ({"v": 5}, "math", 'holds an object ({"v": 5}), not a single answer'),
        (True, "math", "holds a boolean (True), not a math answer"),
        (False, "multiple_choice", "holds a boolean (False), not a multiple_choice answer"),
        (["yes"], "yes_no", 'holds a list (["yes"]), not a single answer'),
    ],
)
def test_non_scalar_and_boolean_answers(tmp_path, answer, task, message):
    path = jsonl(tmp_path / "train.jsonl", [{"question": "Is 7 prime?", "answer": answer}])
    assert str(error(files(path, task=task))) == f"{path} row 1: column 'answer' {message}"


def test_booleans_are_yes_no_answers(tmp_path):
    rows = [{"question": "Is 7 prime?", "answer": True}, {"question": "Is 9?", "answer": False}]
    path = jsonl(tmp_path / "train.jsonl", rows)
    problems = load_problems(files(path, task="yes_no"), DATASET)["train"]
    assert [p.answer for p in problems] == ["yes", "no"]


@pytest.mark.parametrize("junk", ["N/A", "none", "?", "unknown", "nan", "inf", "{}"])
def test_junk_math_gold_is_a_source_error(tmp_path, junk):
    path = jsonl(tmp_path / "train.jsonl", [GOOD, {"question": "How far?", "answer": junk}])
    message = str(error(files(path)))
    assert message.startswith(f"{path} row 2: column 'answer': cannot normalise gold answer ")
    assert f"{junk!r} for task 'math'" in message


# ---------------------------------------------------------------------------------------------
# ragged CSV rows and unreadable files


def test_csv_row_with_an_extra_field(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("id,question,answer\np1,What is 4 + 4?,8\np2,What is 5 + 5?,10,oops\n")
    assert str(error(files(path))) == f"{path} row 2 (line 3): 4 fields, the header has 3"


def test_csv_row_with_a_missing_field(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('question,answer\n"Two lines,\nin one cell: 3 + 3?",6\nWhat is 1 + 2?\n')
    assert str(error(files(path))) == f"{path} row 2 (line 4): 1 fields, the header has 2"


def test_read_table_raises_for_a_ragged_row(tmp_path):
    path = tmp_path / "rationales.csv"
    path.write_text("instruction,output\nQ,The answer is 3.,extra\n")
    with pytest.raises(RowError, match=r"row 1 \(line 2\): 3 fields, the header has 2"):
        read_table(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_latin1_file_names_file_and_line(tmp_path, suffix):
    path = tmp_path / f"train{suffix}"
    text = {
        ".csv": "question,answer\nHow many apples?,3\nHow much is a café au lait?,4\n",
        ".jsonl": '{"question": "Apples?", "answer": 3}\n{"question": "Café?", "answer": 4}\n',
        ".json": '[{"question": "Apples?", "answer": 3},\n {"question": "Café?", "answer": 4}]',
    }[suffix]
    path.write_bytes(text.encode("latin-1"))
    line = 3 if suffix == ".csv" else 2
    assert str(error(files(path))) == (
        f"{path} line {line}: byte 0xe9 is not UTF-8 (latin-1 or another encoding?); "
        "save the file as UTF-8"
    )


def test_utf16_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(GOOD) + "\n", encoding="utf-16")  # with a byte-order mark
    assert str(error(files(path))) == f"{path}: UTF-16 text; save the file as UTF-8"


def test_utf16_without_a_byte_order_mark_and_binary_data(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes("question,answer\n".encode("utf-16-le"))
    assert str(error(files(path))) == (
        f"{path} line 1: NUL byte: binary data or UTF-16, not UTF-8 text"
    )
    path.write_bytes(b"question,answer\nQ,1\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert str(error(files(path))) == (
        f"{path} line 5: NUL byte: binary data or UTF-16, not UTF-8 text"
    )


def test_utf8_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes("question,answer\nWhat is 9 - 4?,5\n".encode("utf-8-sig"))
    (problem,) = load_problems(files(path), DATASET)["train"]
    assert (problem.question, problem.answer) == ("What is 9 - 4?", "5")


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("question,answer\n")
    assert str(error(files(path))) == f"{path}: no rows, so no problems"


# ---------------------------------------------------------------------------------------------
# bad_rows: skip


def test_skip_counts_every_bad_row_by_reason(tmp_path):
    rows = [
        GOOD,
        {"question": None, "answer": "1"},
        {"question": "   ", "answer": "2"},
        {"question": "y" * (MAX_QUESTION_CHARS + 1), "answer": "3"},
        {"question": "How many wheels do 2 bikes have?", "answer": [4]},
        {"question": "How many wheels do 3 bikes have?", "answer": True},
        {"question": "How many wheels does a tricycle have?", "answer": "N/A"},
        {"question": "How many wheels does a car have?", "answer": None},
        {"prompt": "How many wheels?", "answer": "4"},
        {"question": "How many sides has a square?", "answer": "4"},
        7,
    ]
    path = jsonl(tmp_path / "train.jsonl", rows)
    problems = load_problems(files(path, bad_rows="skip"), DATASET)

    assert isinstance(problems, LoadedProblems)
    assert [(p.id, p.answer) for p in problems["train"]] == [
        ("train-00001", "24"),
        ("train-00010", "4"),  # ids keep the row's position
    ]
    assert problems.skipped == {
        "train": {
            "null question": 1,
            "empty question": 1,
            "question too long": 1,
            "non-scalar answer": 1,
            "boolean answer": 1,
            "invalid answer": 1,
            "null answer": 1,
            "missing column": 1,
            "not an object": 1,
        }
    }


def test_skip_ragged_csv_rows_and_duplicate_ids(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("id,question,answer\na,Q one?,1\nb,Q two?,2,3\na,Q three?,3\nc,Q four?\n")
    problems = load_problems(files(path, columns=Columns(id="id"), bad_rows="skip"), DATASET)

    assert [p.id for p in problems["train"]] == ["a"]
    assert problems.skipped == {"train": {"ragged row": 2, "duplicate id": 1}}


def test_skip_and_limit_count_kept_problems(tmp_path):
    rows = [{"question": None, "answer": 1}] + [
        {"question": f"Q{i}?", "answer": i} for i in range(5)
    ]
    path = jsonl(tmp_path / "train.jsonl", rows)
    problems = load_problems(files(path, bad_rows="skip", limit=3), DATASET)
    assert [p.question for p in problems["train"]] == ["Q0?", "Q1?", "Q2?"]
    assert problems.skipped["train"] == {"null question": 1}


def test_skip_that_leaves_nothing_is_an_error(tmp_path):
    rows = [{"question": None, "answer": 1}, {"question": "", "answer": 2}, {"question": ""}]
    path = jsonl(tmp_path / "train.jsonl", rows)
    assert str(error(files(path, bad_rows="skip"))) == (
        f"{path}: every row was skipped (2 empty question, 1 null question), so no problems"
    )


def test_unreadable_files_are_errors_even_when_skipping(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes('{"question": "Café?", "answer": 4}\n'.encode("latin-1"))
    assert "line 1: byte 0xe9 is not UTF-8" in str(error(files(path, bad_rows="skip")))


def test_bad_rows_is_a_checked_recipe_option(tmp_path):
    assert files(tmp_path / "t.jsonl").bad_rows == "error"
    with pytest.raises(ValidationError, match="bad_rows"):
        files(tmp_path / "t.jsonl", bad_rows="ignore")


# ---------------------------------------------------------------------------------------------
# test problems that train has too


def test_overlapping_test_problems_are_counted(tmp_path):
    train = jsonl(tmp_path / "train.jsonl", [{"question": f"Q{i}?", "answer": i} for i in range(4)])
    test_rows = [{"question": "Q1?", "answer": 1}, {"question": " Q2? ", "answer": 2}]
    test = jsonl(tmp_path / "test.jsonl", [*test_rows, {"question": "New?", "answer": 9}])
    problems = load_problems(files(train, test), DATASET)

    assert [p.question for p in problems["test"]] == ["New?"]
    assert problems.skipped == {"train": {}, "test": {IN_TRAIN: 2}}


def test_a_test_split_entirely_in_train_is_an_error(tmp_path):
    train = jsonl(tmp_path / "train.jsonl", [{"question": f"Q{i}?", "answer": i} for i in range(3)])
    test = jsonl(
        tmp_path / "test.jsonl",
        [{"question": "Q0?", "answer": 0}, {"question": "Q2?", "answer": 2}],
    )
    err = error(files(train, test))

    assert str(err) == f"{test}: all 2 test problems are also in train, so no test problem is left"
    assert err.key == ("source", "test")


# ---------------------------------------------------------------------------------------------
# which recipe key pointed at what failed


def test_error_keys_name_the_recipe_key(tmp_path):
    good = jsonl(tmp_path / "train.jsonl", [GOOD, {**GOOD, "question": "Q?"}])
    bad = jsonl(tmp_path / "test.jsonl", [{"question": None, "answer": 1}])
    assert error(files(good, bad)).key == ("source", "test")
    assert error(files(tmp_path / "missing.jsonl")).key == ("source", "train")
    hub = HubSource(kind="hub", dataset=str(tmp_path / "no-such-folder"))
    assert error(hub).key == ("source", "dataset")
    carve = DatasetSpec(repo_id="local/x", test_size=5)
    assert error(files(good), carve).key == ("dataset", "test_size")


# ---------------------------------------------------------------------------------------------
# multiple choice with the options inside the question

STACKED = "Where would you most likely keep spare coins?\nA. a piggy bank\nB. a river\nC. a cloud"
INLINE = "What do bees make? A: honey, B: silk, C: wool, D: milk"


@pytest.mark.parametrize(
    ("question", "answer", "stem", "choices", "gold"),
    [
        (STACKED, "A", STACKED.split("\n")[0], ["a piggy bank", "a river", "a cloud"], "A"),
        (
            STACKED,
            "a piggy bank",
            STACKED.split("\n")[0],
            ["a piggy bank", "a river", "a cloud"],
            "A",
        ),
        (INLINE, "honey", "What do bees make?", ["honey", "silk", "wool", "milk"], "A"),
        (INLINE + "\nAnswer:", "D", "What do bees make?", ["honey", "silk", "wool", "milk"], "D"),
        (
            "Which is a mammal?\nAnswer Choices:\n(A) a shark\n(B) a dolphin",
            "(B)",
            "Which is a mammal?",
            ["a shark", "a dolphin"],
            "B",
        ),
    ],
)
def test_options_inside_the_question(tmp_path, question, answer, stem, choices, gold):
    path = jsonl(tmp_path / "train.jsonl", [{"question": question, "answer": answer}])
    (problem,) = load_problems(files(path, task="multiple_choice"), DATASET)["train"]

    assert problem == Problem("train-00001", stem, gold, choices, None)
    shown = render_question(problem.question, "multiple_choice", problem.choices)
    assert shown == "\n".join([stem, *(f"({chr(65 + i)}) {c}" for i, c in enumerate(choices))])


def test_alpaca_multiple_choice_answer_given_as_option_text(tmp_path):
    rows = [
        {
            "instruction": "What do you use to cut paper?\nA. a spoon\nB. scissors\nC. a cup",
            "output": "Scissors have two sharp blades that close on the paper. The answer is "
            "scissors.",
        }
    ]
    path = tmp_path / "csqa.json"
    path.write_text(json.dumps(rows))
    source = AlpacaSource(kind="alpaca", train=str(path), task="multiple_choice")
    (problem,) = load_problems(source, DATASET)["train"]

    assert (problem.question, problem.answer) == ("What do you use to cut paper?", "B")
    assert problem.choices == ["a spoon", "scissors", "a cup"]
    assert problem.reference_rationale == "Scissors have two sharp blades that close on the paper."


def test_question_without_options_keeps_letters_only(tmp_path):
    rows = [{"question": "Pick plan A or plan B. Which saves more?", "answer": "tundra"}]
    path = jsonl(tmp_path / "train.jsonl", rows)
    message = str(error(files(path, task="multiple_choice")))
    assert message.startswith(f"{path} row 1: column 'answer': cannot normalise gold answer")
