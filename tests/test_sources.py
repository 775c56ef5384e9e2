"""Sources: local files in every format, GSM8K / AQuA / StrategyQA / SVAMP shapes, the paper's
alpaca files, reasoning-gym, a Hub id pointed at a local folder, test carving and errors."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from factory.recipe import AlpacaSource, Columns, DatasetSpec, FilesSource, GymSource, HubSource
from factory.sources import Problem, SourceError, load_problems

DATASET = DatasetSpec(repo_id="local/x")
AQUA = ["A)21", "B)21.5", "C)22"]

# Rows with every field under a name of its own: the column mapping has to find them.
MAPPED_ROWS = [
    {"uid": "p1", "prompt": "What is 2 + 3?", "gold": "5", "work": "2 + 3 = 5."},
    {"uid": "p2", "prompt": "  What is 10 / 4?  ", "gold": "2.50", "work": ""},
    {"uid": "p3", "prompt": "What is 7 - 9?", "gold": "-2", "work": "7 - 9 = -2."},
]
MAPPING = Columns(id="uid", question="prompt", answer="gold", rationale="work")

GSM8K_ROWS = [
    {
        "question": "Tom has 3 bags of 4 apples. He eats 2. How many apples are left?",
        "answer": "Tom has 3*4=<<3*4=12>>12 apples.\nAfter eating he has 12-2=<<12-2=10>>10 "
        "apples.\n#### 10",
    },
    {
        "question": "A pen costs $1,250 cents... how many dollars is 2,000 of them worth?",
        "answer": "They are worth 2000*1.25=<<2000*1.25=2500>>2500 dollars.\n#### 2,500",
    },
]


def files_source(path: Path, **kwargs) -> FilesSource:
    return FilesSource(kind="files", train=str(path), **kwargs)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_json(path: Path, rows: list) -> Path:
    path.write_text(json.dumps(rows, indent=2))
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(
            {
                k: json.dumps(v) if isinstance(v, list) else ("" if v is None else v)
                for k, v in r.items()
            }
            for r in rows
        )
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


WRITERS = {"jsonl": write_jsonl, "json": write_json, "csv": write_csv, "parquet": write_parquet}


def source_error(source, dataset: DatasetSpec = DATASET) -> str:
    with pytest.raises(SourceError) as info:
        load_problems(source, dataset)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# local files, every format, with a column mapping


@pytest.mark.parametrize("ext", sorted(WRITERS))
def test_files_in_every_format_with_a_column_mapping(tmp_path, ext):
    path = WRITERS[ext](tmp_path / f"train.{ext}", MAPPED_ROWS)
    problems = load_problems(files_source(path, columns=MAPPING), DATASET)

    assert list(problems) == ["train"]  # no test split asked for
    assert problems["train"] == [
        Problem("p1", "What is 2 + 3?", "5", None, "2 + 3 = 5."),
        Problem("p2", "What is 10 / 4?", "2.5", None, None),  # stripped; empty rationale -> None
        Problem("p3", "What is 7 - 9?", "-2", None, "7 - 9 = -2."),
    ]
    assert problems["train"][0].to_dict() == {
        "id": "p1",
        "question": "What is 2 + 3?",
        "answer": "5",
        "choices": None,
        "reference_rationale": "2 + 3 = 5.",
    }


def test_parquet_numbers_are_normalised_and_ids_default_to_position(tmp_path):
    rows = [{"q": "How many bananas per group?", "a": 145.0}, {"q": "Total?", "a": 1234}]
    path = write_parquet(tmp_path / "train.parquet", rows)
    problems = load_problems(files_source(path, columns=Columns(question="q", answer="a")), DATASET)

    assert [(p.id, p.answer, p.reference_rationale) for p in problems["train"]] == [
        ("train-00001", "145", None),
        ("train-00002", "1234", None),
    ]


def test_uppercase_extension_is_read(tmp_path):
    path = write_jsonl(tmp_path / "TRAIN.JSONL", [{"question": "1 + 1?", "answer": "2"}])
    assert load_problems(files_source(path), DATASET)["train"][0].answer == "2"


def test_a_test_file_is_its_own_split_without_problems_seen_in_train(tmp_path):
    train = write_jsonl(
        tmp_path / "train.jsonl", [{"question": f"q{i}", "answer": i} for i in range(4)]
    )
    test_rows = [{"question": "q1", "answer": 1}, {"question": "new", "answer": 9}]
    test = write_jsonl(tmp_path / "test.jsonl", test_rows)
    problems = load_problems(FilesSource(kind="files", train=str(train), test=str(test)), DATASET)

    assert [p.question for p in problems["train"]] == ["q0", "q1", "q2", "q3"]
    assert [(p.id, p.question, p.answer) for p in problems["test"]] == [("test-00002", "new", "9")]


# ---------------------------------------------------------------------------------------------
# GSM8K: '#### N' answers with a human rationale in front


def test_gsm8k_answer_becomes_number_and_rationale(tmp_path):
    path = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)
    problems = load_problems(files_source(path), DATASET)["train"]

    assert [p.answer for p in problems] == ["10", "2500"]
    assert problems[0].reference_rationale == (
        "Tom has 3*4=12 apples.\nAfter eating he has 12-2=10 apples."
    )
    assert problems[1].reference_rationale == "They are worth 2000*1.25=2500 dollars."
    assert problems[0].question == GSM8K_ROWS[0]["question"]


def test_gsm8k_rationale_column_wins_over_the_answer_text(tmp_path):
    rows = [{**GSM8K_ROWS[0], "explanation": "Twelve apples minus two."}]
    path = write_jsonl(tmp_path / "gsm8k.jsonl", rows)
    source = files_source(path, columns=Columns(rationale="explanation"))
    (problem,) = load_problems(source, DATASET)["train"]

    assert (problem.answer, problem.reference_rationale) == ("10", "Twelve apples minus two.")


def test_real_gsm8k_train_file(shared_data):
    path = shared_data / "gsm8k" / "train.jsonl"
    problems = load_problems(files_source(path, limit=50), DATASET)["train"]
    raw = [json.loads(line) for line in path.open().readlines()[:50]]

    assert len(problems) == 50
    assert problems[0].answer == "72"
    assert problems[0].reference_rationale == (
        "Natalia sold 48/2 = 24 clips in May.\n"
        "Natalia sold 48+24 = 72 clips altogether in April and May."
    )
    for problem, row in zip(problems, raw, strict=True):
        assert re.fullmatch(r"-?\d+(?:\.\d+)?", problem.answer), problem.answer
        assert problem.answer == row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        assert problem.question == row["question"].strip()
        assert problem.reference_rationale
        assert "####" not in problem.reference_rationale
        assert "<<" not in problem.reference_rationale
    assert len({p.id for p in problems}) == 50


# ---------------------------------------------------------------------------------------------
# AQuA-style multiple choice


def test_multiple_choice_list_column(tmp_path):
    rows = [
        {"question": "Q one", "options": AQUA, "correct": "c"},
        {"question": "Q two", "options": AQUA, "correct": "(B)"},
        {"question": "Q three", "options": AQUA, "correct": "21"},  # the option's text
    ]
    path = write_json(tmp_path / "aqua.json", rows)
    source = files_source(
        path, task="multiple_choice", columns=Columns(answer="correct", choices="options")
    )
    problems = load_problems(source, DATASET)["train"]

    assert [p.answer for p in problems] == ["C", "B", "A"]
    assert all(p.choices == AQUA for p in problems)


@pytest.mark.parametrize("ext", sorted(WRITERS))
def test_multiple_choice_in_every_format_with_a_column_mapping(tmp_path, ext):
    rows = [
        {"qid": "aqua-1", "stem": "Q one", "opts": AQUA, "gold": "B", "why": "Half of 43."},
        {"qid": "aqua-2", "stem": "Q two", "opts": AQUA, "gold": "c)", "why": "It is 22."},
    ]
    path = WRITERS[ext](tmp_path / f"aqua.{ext}", rows)
    columns = Columns(id="qid", question="stem", answer="gold", choices="opts", rationale="why")
    problems = load_problems(files_source(path, task="multiple_choice", columns=columns), DATASET)

    assert problems["train"] == [
        Problem("aqua-1", "Q one", "B", AQUA, "Half of 43."),
        Problem("aqua-2", "Q two", "C", AQUA, "It is 22."),
    ]


def test_multiple_choice_json_string_column_in_csv(tmp_path):
    path = tmp_path / "aqua.csv"
    path.write_text('question,options,correct\nQ,"[""A)21"", ""B)21.5"", ""C)22""]",C\n')
    source = files_source(
        path, task="multiple_choice", columns=Columns(answer="correct", choices="options")
    )
    (problem,) = load_problems(source, DATASET)["train"]

    assert (problem.answer, problem.choices) == ("C", AQUA)


def test_multiple_choice_newline_separated_string_column(tmp_path):
    path = write_csv(
        tmp_path / "aqua.csv", [{"question": "Q", "options": "\n".join(AQUA), "answer": "b"}]
    )
    source = files_source(path, task="multiple_choice", columns=Columns(choices="options"))
    (problem,) = load_problems(source, DATASET)["train"]

    assert (problem.answer, problem.choices) == ("B", AQUA)


def test_multiple_choice_gold_outside_the_choices_is_an_error(tmp_path):
    rows = [
        {"question": "Q", "options": AQUA, "answer": "A"},
        {"question": "R", "options": AQUA, "answer": "E"},
    ]
    path = write_jsonl(tmp_path / "aqua.jsonl", rows)
    message = source_error(
        files_source(path, task="multiple_choice", columns=Columns(choices="options"))
    )

    assert f"{path} row 2" in message
    assert "'E'" in message
    assert "multiple_choice" in message


# ---------------------------------------------------------------------------------------------
# StrategyQA in the paper's alpaca layout

STRATEGYQA = [
    {
        "instruction": "Could a llama give birth twice during the War in Vietnam (1945-46)?",
        "output": "The war lasted about 6 months. A llama's gestation is about 11 months, "
        "so it could not give birth twice. The answer is False",
    },
    {
        "instruction": "Are more people today related to Genghis Khan than Julius Caesar?",
        "output": "True",
    },
    {"instruction": "Is a pound sterling valuable?", "output": "False"},
    {"instruction": "Is water wet?", "input": "Think about it.", "output": "The answer is True."},
    {"instruction": "Do fish swim?", "output": "Fish live in water. The answer is true."},
]


def test_strategyqa_alpaca_to_yes_no(tmp_path):
    path = write_json(tmp_path / "stqa.json", STRATEGYQA)
    problems = load_problems(AlpacaSource(kind="alpaca", train=str(path), task="yes_no"), DATASET)

    train = problems["train"]
    assert [p.answer for p in train] == ["no", "yes", "no", "yes", "yes"]
    assert train[0].reference_rationale == (
        "The war lasted about 6 months. A llama's gestation is about 11 months, "
        "so it could not give birth twice."
    )
    assert [p.reference_rationale for p in train[1:4]] == [None, None, None]  # answer only
    assert train[3].question == "Is water wet?\nThink about it."  # instruction + input
    assert train[4].reference_rationale == "Fish live in water."
    assert [p.id for p in train] == [f"train-{i:05d}" for i in range(1, 6)]
    assert all(p.choices is None for p in train)


def test_alpaca_lowercase_answer_line(tmp_path):
    rows = [
        {
            "instruction": "Is Paris in France?",
            "output": "Paris is in France. Therefore, the answer is True",
        },
        {"instruction": "Add 34 and 18.", "output": "Add 34 and 18, then the answer is 52"},
    ]
    path = write_json(tmp_path / "stqa.json", rows[:1])
    (problem,) = load_problems(
        AlpacaSource(kind="alpaca", train=str(path), task="yes_no"), DATASET
    )["train"]
    assert problem.answer == "yes"
    assert problem.reference_rationale.startswith("Paris is in France.")

    path = write_json(tmp_path / "svamp.json", rows[1:])
    (problem,) = load_problems(AlpacaSource(kind="alpaca", train=str(path)), DATASET)["train"]
    assert problem.answer == "52"  # today the whole output becomes the 'gold answer'
    assert problem.reference_rationale.startswith("Add 34 and 18")


def test_real_strategyqa_answer_only_file(shared_data):
    path = shared_data / "paper-cot" / "strategyqa" / "strategyQA_onlyans.json"
    raw = json.loads(path.read_text())
    train = load_problems(AlpacaSource(kind="alpaca", train=str(path), task="yes_no"), DATASET)[
        "train"
    ]

    assert len(train) == len(raw) == 2000
    assert {p.answer for p in train} == {"yes", "no"}
    assert sum(p.answer == "no" for p in train) == sum(r["output"] == "False" for r in raw)
    assert all(p.reference_rationale is None for p in train)
    assert train[0].question == raw[0]["instruction"]


def test_real_svamp_human_annotation_alpaca_file(shared_data):
    path = shared_data / "paper-cot" / "svamp" / "svamp_human_annotation.json"
    train = load_problems(AlpacaSource(kind="alpaca", train=str(path)), DATASET)["train"]

    assert len(train) == 700
    assert all(re.fullmatch(r"-?\d+(?:\.\d+)?", p.answer) for p in train)
    assert all(
        p.reference_rationale and "The answer is" not in p.reference_rationale for p in train
    )


# ---------------------------------------------------------------------------------------------
# SVAMP


def test_svamp_shaped_rows(tmp_path):
    rows = [
        {
            "id": "chal-777",
            "question": "290 bananas in 2 groups?",
            "answer": "145.0",
            "equation": "( 290.0 / 2.0 )",
        },
        {
            "id": "chal-2",
            "question": "Dan had $ 3 left...",
            "answer": "1",
            "equation": "( 4.0 - 3.0 )",
        },
    ]
    path = write_jsonl(tmp_path / "svamp.jsonl", rows)
    train = load_problems(files_source(path, columns=Columns(rationale="equation")), DATASET)[
        "train"
    ]

    assert [(p.id, p.answer, p.reference_rationale) for p in train] == [
        ("chal-777", "145", "( 290.0 / 2.0 )"),
        ("chal-2", "1", "( 4.0 - 3.0 )"),
    ]


def test_real_svamp_train_and_test(shared_data):
    folder = shared_data / "svamp"
    source = FilesSource(
        kind="files",
        train=str(folder / "train.jsonl"),
        test=str(folder / "test.jsonl"),
        columns=Columns(id="id", rationale="equation"),
    )
    problems = load_problems(source, DATASET)
    train, test = problems["train"], problems["test"]

    assert (len(train), len(test)) == (700, 300)
    assert not {p.id for p in train} & {p.id for p in test}
    by_id = {p.id: p for p in train}
    assert by_id["chal-777"].answer == "145"
    assert by_id["chal-777"].reference_rationale == "( 290.0 / 2.0 )"
    assert by_id["chal-2"].answer == "1"
    assert all(re.fullmatch(r"-?\d+(?:\.\d+)?", p.answer) for p in train + test)
    assert all(not p.answer.endswith(".0") for p in train + test)
    raw = [
        json.loads(line) for name in ("train", "test") for line in (folder / f"{name}.jsonl").open()
    ]
    assert [(p.id, p.reference_rationale) for p in train + test] == [
        (row["id"], row["equation"].strip()) for row in raw
    ]


# ---------------------------------------------------------------------------------------------
# reasoning-gym


def gym(seed: int = 0, train: int = 12, test: int | None = 6, **kwargs) -> GymSource:
    return GymSource(kind="gym", dataset="chain_sum", train=train, test=test, seed=seed, **kwargs)


def test_gym_is_deterministic_per_seed():
    first, again, other = (load_problems(gym(seed), DATASET) for seed in (7, 7, 8))

    assert first == again
    assert [p.question for p in first["train"]] != [p.question for p in other["train"]]


def test_gym_splits_are_disjoint():
    problems = load_problems(gym(seed=3, train=30, test=15), DATASET)
    train, test = problems["train"], problems["test"]

    assert len(train) == 30
    assert 0 < len(test) <= 15
    assert [p.id for p in train] == [f"train-{i:05d}" for i in range(1, 31)]
    assert all(p.id.startswith("test-") for p in test)
    assert not {p.question for p in train} & {p.question for p in test}
    for problem in train + test:
        assert problem.question.startswith("State the final answer")
        assert re.fullmatch(r"-?\d+", problem.answer)
        assert problem.reference_rationale is None


def test_gym_answers_are_the_sums():
    for problem in load_problems(gym(train=10, test=None), DATASET)["train"]:
        expression = problem.question.split(":", 1)[1].rstrip("= ").strip()
        first, *rest = expression.split()
        total = int(first)
        for sign, number in zip(rest[::2], rest[1::2], strict=True):
            total += int(number) if sign == "+" else -int(number)
        assert int(problem.answer) == total


def test_gym_nested_rationale_column():
    import reasoning_gym

    source = GymSource(
        kind="gym",
        dataset="gsm_symbolic",
        train=3,
        seed=1,
        columns=Columns(rationale="metadata.answer_cot"),
    )
    train = load_problems(source, DATASET)["train"]
    entries = list(reasoning_gym.create_dataset("gsm_symbolic", size=3, seed=1))

    assert len(train) == 3
    for problem, entry in zip(train, entries, strict=True):
        cot = entry["metadata"]["answer_cot"]
        assert cot.rstrip().endswith(f"#### {entry['answer']}")
        assert problem.answer == entry["answer"]
        assert problem.reference_rationale == cot.rsplit("####", 1)[0].strip()
        assert "####" not in problem.reference_rationale


def test_gym_generator_that_refuses_its_options_is_a_source_error():
    # The recipe schema already rejects unknown generators and option names; a generator can
    # still refuse the values.
    options = {"min_terms": 5, "max_terms": 2}
    with pytest.raises(SourceError) as info:
        load_problems(GymSource(kind="gym", dataset="chain_sum", train=2, options=options), DATASET)
    assert str(info.value) == "reasoning-gym dataset 'chain_sum': max_terms must be >= min_terms"
    assert info.value.key == ("source", "dataset")


# ---------------------------------------------------------------------------------------------
# a Hub id: `load_dataset` on a local folder


@pytest.fixture
def hub_folder(tmp_path) -> Path:
    folder = tmp_path / "hub-dataset"
    folder.mkdir()
    write_jsonl(
        folder / "train.jsonl", [{"q": f"train question {i}", "a": str(i)} for i in range(6)]
    )
    write_jsonl(
        folder / "test.jsonl", [{"q": f"test question {i}", "a": f"{i}.0"} for i in range(4)]
    )
    return folder


def test_hub_source_from_a_local_folder_with_split_slice(hub_folder):
    source = HubSource(
        kind="hub",
        dataset=str(hub_folder),
        train="train[:3]",
        test="test",
        columns=Columns(question="q", answer="a"),
    )
    problems = load_problems(source, DATASET)

    assert [(p.id, p.question, p.answer) for p in problems["train"]] == [
        ("train-00001", "train question 0", "0"),
        ("train-00002", "train question 1", "1"),
        ("train-00003", "train question 2", "2"),
    ]
    assert [p.answer for p in problems["test"]] == ["0", "1", "2", "3"]


def test_hub_source_parquet_folder_with_carved_test(tmp_path):
    folder = tmp_path / "parquet-dataset" / "data"
    folder.mkdir(parents=True)
    write_parquet(
        folder / "train-00000-of-00001.parquet",
        [{"question": f"q{i}", "answer": i} for i in range(10)],
    )
    source = HubSource(kind="hub", dataset=str(folder.parent))
    problems = load_problems(source, DatasetSpec(repo_id="local/x", test_size=0.3))

    assert (len(problems["train"]), len(problems["test"])) == (7, 3)
    assert sorted(int(p.answer) for p in problems["train"] + problems["test"]) == list(range(10))


def test_hub_source_error_names_dataset_split_and_row(hub_folder):
    source = HubSource(kind="hub", dataset=str(hub_folder), train="train[:2]")
    message = source_error(source)

    assert f"{hub_folder}[train[:2]] row 1" in message
    assert "no column 'question'" in message
    assert "q, a" in message


# ---------------------------------------------------------------------------------------------
# limit and test_size carving


@pytest.fixture
def twenty(tmp_path) -> FilesSource:
    rows = [{"id": f"p{i:02d}", "question": f"question {i}", "answer": str(i)} for i in range(20)]
    return files_source(write_jsonl(tmp_path / "train.jsonl", rows))


def test_limit_keeps_the_first_rows_of_each_split(tmp_path, twenty):
    test = write_jsonl(
        tmp_path / "test.jsonl", [{"question": f"t{i}", "answer": i} for i in range(9)]
    )
    source = twenty.model_copy(update={"limit": 5, "test": str(test)})
    problems = load_problems(source, DATASET)

    assert [p.id for p in problems["train"]] == ["p00", "p01", "p02", "p03", "p04"]
    assert [p.question for p in problems["test"]] == ["t0", "t1", "t2", "t3", "t4"]


def carve(source: FilesSource, test_size, seed: int = 0) -> tuple[list[str], list[str]]:
    spec = DatasetSpec(repo_id="local/x", test_size=test_size, seed=seed)
    problems = load_problems(source, spec)
    return [p.id for p in problems["train"]], [p.id for p in problems["test"]]


@pytest.mark.parametrize(
    ("test_size", "n_test"), [(0.25, 5), (0.1, 2), (0.5, 10), (3, 3), (19, 19)]
)
def test_test_size_carves_a_test_split(twenty, test_size, n_test):
    train, test = carve(twenty, test_size)

    assert (len(train), len(test)) == (20 - n_test, n_test)
    assert not set(train) & set(test)
    assert sorted(train + test) == [f"p{i:02d}" for i in range(20)]
    assert train == sorted(train) and test == sorted(test)  # source order kept in each split


def test_test_size_is_seeded(twenty):
    assert carve(twenty, 0.25, seed=1) == carve(twenty, 0.25, seed=1)
    assert carve(twenty, 0.25, seed=1)[1] != carve(twenty, 0.25, seed=2)[1]


def test_test_size_after_limit(twenty):
    train, test = carve(twenty.model_copy(update={"limit": 8}), 0.5)
    assert (len(train), len(test)) == (4, 4)
    assert sorted(train + test) == [f"p{i:02d}" for i in range(8)]


@pytest.mark.parametrize("test_size", [20, 25, 0.01])
def test_test_size_leaving_nothing_is_an_error(twenty, test_size):
    message = source_error(twenty, DatasetSpec(repo_id="local/x", test_size=test_size))
    assert f"dataset.test_size={test_size}" in message
    assert "leaves no train or no test problems" in message


def test_test_size_is_ignored_when_the_source_has_a_test_split(tmp_path, twenty):
    test = write_jsonl(tmp_path / "test.jsonl", [{"question": "other", "answer": 1}])
    source = twenty.model_copy(update={"test": str(test)})
    problems = load_problems(source, DatasetSpec(repo_id="local/x", test_size=0.5))

    assert (len(problems["train"]), len(problems["test"])) == (20, 1)


# ---------------------------------------------------------------------------------------------
# errors name the file and the row


def test_missing_column_lists_the_available_ones(tmp_path):
    rows = [{"problem": "a", "answer": "1", "extra": 0}, {"problem": "b", "solution": "2"}]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    message = source_error(files_source(path, columns=Columns(question="problem")))

    assert message == f"{path} row 2: no column 'answer' (columns: problem, solution)"

    message = source_error(files_source(path))
    assert message == f"{path} row 1: no column 'question' (columns: problem, answer, extra)"


def test_missing_choices_column(tmp_path):
    path = write_csv(tmp_path / "train.csv", [{"question": "Q", "answer": "A"}])
    source = files_source(path, task="multiple_choice", columns=Columns(choices="options"))
    assert source_error(source) == f"{path} row 1: no column 'options' (columns: question, answer)"


def test_missing_id_column(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"question": "Q", "answer": "1"}])
    message = source_error(files_source(path, columns=Columns(id="qid")))
    assert message == f"{path} row 1: no column 'qid' (columns: question, answer)"


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.jsonl"
    assert source_error(files_source(path)) == f"{path}: no such file"
    assert source_error(AlpacaSource(kind="alpaca", train=str(path))) == f"{path}: no such file"


def test_unsupported_extension(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("question\tanswer\n")
    message = source_error(files_source(path))
    assert message.startswith(f"{path}: unsupported file type '.txt'")
    assert "jsonl, json, csv, parquet" in message


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(
        '[\n  {"question": "a", "answer": "1"},\n  {"question": "b" "answer": "2"}\n]\n'
    )
    message = source_error(files_source(path))
    assert message.startswith(f"{path}: invalid JSON at line 3:")


def test_invalid_jsonl_names_the_file_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n\n{"question": "b", "answer": "2"}\n{oops\n')
    message = source_error(files_source(path))
    assert message.startswith(f"{path}: invalid JSON at line 4:")


def test_json_that_is_not_a_list(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('{"question": "a", "answer": "1"}')
    assert source_error(files_source(path)) == f"{path}: expected a JSON list of objects"


@pytest.mark.parametrize("items", [[1, 2], ["abc"]])
def test_json_list_of_non_objects(tmp_path, items):
    path = write_json(tmp_path / "train.json", items)
    message = source_error(files_source(path))
    assert message.startswith(f"{path} row 1: ")
    assert "object" in message.removeprefix(str(path))  # the path itself says "objects"


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_text("not parquet")
    assert source_error(files_source(path)).startswith(f"{path}:")


def test_invalid_json_choices_cell(tmp_path):
    path = tmp_path / "aqua.csv"
    path.write_text('question,options,answer\nQ,"[""A)21"", ""B)21.5""",A\n')
    source = files_source(path, task="multiple_choice", columns=Columns(choices="options"))
    assert f"{path} row 1" in source_error(source)


def test_duplicate_ids(tmp_path):
    rows = [{"id": "a", "question": "Q1", "answer": 1}, {"id": "b", "question": "Q2", "answer": 2}]
    rows.append({"id": "a", "question": "Q3", "answer": 3})
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    assert source_error(files_source(path)) == f"{path} row 3: duplicate problem id 'a'"


def test_duplicate_ids_from_a_mapped_column(tmp_path):
    path = write_csv(tmp_path / "train.csv", [{"k": 1, "question": "Q", "answer": 1}] * 2)
    message = source_error(files_source(path, columns=Columns(id="k")))
    assert message == f"{path} row 2: duplicate problem id '1'"


def test_gold_answer_that_cannot_be_normalised(tmp_path):
    rows = [
        {"question": "Is it?", "answer": "yes"},
        {"question": "Is it really?", "answer": "maybe"},
    ]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    message = source_error(files_source(path, task="yes_no"))

    assert message.startswith(f"{path} row 2: column 'answer': ")
    assert "cannot normalise gold answer 'maybe' for task 'yes_no'" in message


def test_math_gold_that_is_empty(tmp_path):
    path = write_csv(tmp_path / "train.csv", [{"question": "Q", "solution": "#### "}])
    message = source_error(files_source(path, columns=Columns(answer="solution")))
    assert message.startswith(f"{path} row 1: column 'solution': cannot normalise gold answer")


def test_alpaca_row_without_output(tmp_path):
    rows = [{"instruction": "Q1", "output": "True"}, {"instruction": "Q2", "response": "False"}]
    path = write_json(tmp_path / "stqa.json", rows)
    message = source_error(AlpacaSource(kind="alpaca", train=str(path), task="yes_no"))
    assert message == f"{path} row 2: an alpaca row needs `instruction` and `output`"
