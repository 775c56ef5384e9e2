"""Built datasets: Hub layout, cards parsed back with huggingface_hub, every config loaded with
`load_dataset`, on a small synthetic recipe and on the paper's released SVAMP CoTs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from datasets import load_dataset
from huggingface_hub import DatasetCard

from factory.recipe import load_recipe
from factory.run import build_dataset, publish_dataset
from factory.shards import load_config

ROOT = Path(__file__).resolve().parents[1]

PROBLEMS = [
    {"id": "p1", "q": "Ann has 3 apples and buys 4 more. How many apples?", "a": "7"},
    {"id": "p2", "q": "A box has 10 pens; 6 are taken. How many are left?", "a": "4"},
    {"id": "p3", "q": "Tom reads 5 pages a day for 3 days. How many pages?", "a": "15"},
    {"id": "p4", "q": "Sue had 9 stamps and gave away 2. How many now?", "a": "7"},
]
# The teacher's rationales: p2 is wrong, p3 has no answer at all, p4 is missing from the file.
RATIONALES = {
    "p1": "  3 + 4 = 7 apples.<br>The answer is 7",
    "p2": "10 - 6 = 5. The answer is 5",
    "p3": "He reads a lot of pages.",
}


TEST_PROBLEM = {"id": "t1", "q": "Bo has 2 cats and gets 2 more. How many cats?", "a": "4"}


def synthetic_recipe(tmp_path: Path) -> Path:
    problems, test = tmp_path / "problems.jsonl", tmp_path / "test.jsonl"
    problems.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    test.write_text(json.dumps(TEST_PROBLEM) + "\n")
    replay = tmp_path / "teacher_l2.json"
    by_id = {p["id"]: p for p in PROBLEMS}
    replay.write_text(
        json.dumps([{"instruction": by_id[i]["q"], "output": out} for i, out in RATIONALES.items()])
    )
    recipe = {
        "description": "A four-problem check.",
        "source": {
            "kind": "files",
            "train": str(problems),
            "test": str(test),
            "task": "math",
            "columns": {"id": "id", "question": "q", "answer": "a"},
        },
        "teacher": {"backend": "replay", "name": "paper", "files": {"cot-L2": str(replay)}},
        "cot": {"answer_only": True},
        "dataset": {"repo_id": "local/synthetic", "license": "mit", "tags": ["unit-test"]},
    }
    path = tmp_path / "synthetic.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_synthetic_build_stats_rows_and_card(tmp_path, home):
    result = build_dataset(load_recipe(synthetic_recipe(tmp_path)), home)
    folder = result.run.dataset
    assert result.manifest.configs["cot-L2"] | {"teacher_params": None} == {
        "teacher": "paper",
        "format": "cot",
        "level": 2,
        "problems_answered": 3,
        "problems_missing": 1,
        "traces": 3,
        "kept": 1,
        "pass_rate": round(1 / 3, 4),
        "solved_share": round(1 / 3, 4),
        "difficulty": {"0%": 2, "1-25%": 0, "26-50%": 0, "51-75%": 0, "76-99%": 0, "100%": 1},
        "dropped": {"unparseable": 1, "wrong": 1},
        "teacher_accuracy": round(1 / 3, 4),
        "mean_steps": 1,
        "mean_tokens": 11,
        "contamination": {},
        "usage": {  # replayed rationales come with no usage
            "requests": 3,
            "prompt_tokens": None,
            "completion_tokens": None,
            "unknown": 3,
            "cost": None,
        },
        "teacher_params": None,
    }

    card = DatasetCard.load(folder / "README.md")
    configs = {c["config_name"]: c for c in card.data.configs}
    assert [c["config_name"] for c in card.data.configs if c.get("default")] == [
        next(iter(configs))
    ]
    assert configs["problems"]["data_files"] == [
        {"split": "train", "path": "problems/train-*"},
        {"split": "test", "path": "problems/test-*"},
    ]
    assert card.data.license == "mit" and card.data.size_categories == ["n<1K"]
    assert card.data.annotations_creators == ["machine-generated"]
    assert {"chain-of-thought", "distillation", "unit-test"} <= set(card.data.tags)
    assert "A four-problem check." in card.text and "## Recipe" in card.text

    answer_only = load_config(folder, "answer-only")
    assert len(answer_only) == len(PROBLEMS)
    gold = {p["id"]: p["a"] for p in PROBLEMS}
    for row in answer_only:
        assert row["completion"] == [
            {"role": "assistant", "content": f"The answer is {gold[row['id']]}."}
        ]
        assert row["prompt"] == [{"role": "user", "content": row["question"]}]
        assert row["correct"] and row["teacher"] == "gold" and row["level"] is None
    (row,) = load_config(folder, "cot-L2")
    assert row["completion"][0]["content"] == "3 + 4 = 7 apples.\nThe answer is 7"
    assert row["raw_output"] == RATIONALES["p1"], "the teacher's text is kept as received"
    assert row["predicted_answer"] == "7" and row["format"] == "cot" and row["level"] == 2
    assert json.loads(row["teacher_params"])["backend"] == "replay"
    (test_row,) = load_config(folder, "problems", "test")
    assert test_row["id"] == "t1" and test_row["answer"] == "4"
    assert "| `cot-L2` | paper | cot | 2 | 1 | unparseable 1, wrong 1 | 33.3% |" in card.text


def test_publish_then_load_from_registry_and_no_new_commit(tmp_path, home):
    recipe = load_recipe(synthetic_recipe(tmp_path))
    build_dataset(recipe, home)
    first = publish_dataset(recipe, home)
    assert first.created and re.fullmatch(r"[0-9a-f]{40}", first.commit)
    again = publish_dataset(recipe, home)
    assert not again.created and again.commit == first.commit
    rows = load_dataset(str(first.path), "answer-only", split="train")
    assert len(rows) == 4
    manifest = json.loads(next((home / "runs").glob("synthetic-*/manifest.json")).read_text())
    assert manifest["dataset"]["commit"] == first.commit
    assert manifest["dataset"]["tag"] == recipe.tag


# --- the paper's released SVAMP CoTs ----------------------------------------------------------


@pytest.fixture(scope="module")
def svamp_build(shared_data, tmp_path_factory):
    import os

    os.environ["PAPER_COT_DIR"] = str(shared_data / "paper-cot")
    os.environ["SVAMP_DIR"] = str(shared_data / "svamp")
    home = tmp_path_factory.mktemp("svamp-home")
    recipe = load_recipe(ROOT / "recipes" / "svamp-paper.yaml")
    result = build_dataset(recipe, home)
    return recipe, result, publish_dataset(recipe, home).path


def test_svamp_paper_has_one_config_per_released_file(svamp_build):
    recipe, result, _ = svamp_build
    teachers = {t.name: t.files for t in recipe.teacher}
    assert len(teachers["gpt-4o"]) == 12 and len(teachers["gemini-1.5-flash"]) == 6
    assert sorted(teachers["llama-3-70b"]) == ["cot-L1", "cot-L2", "cot-L3", "cot-L4"]
    expected = {f"{t}-{c}" for t, files in teachers.items() for c in files}
    assert set(result.manifest.configs) == expected | {"answer-only", "reference"}


def test_svamp_paper_rows_match_files_minus_dropped(svamp_build, shared_data):
    recipe, result, snapshot = svamp_build
    train = {
        json.loads(line)["question"]
        for line in (shared_data / "svamp" / "train.jsonl").read_text().splitlines()
    }
    for teacher in recipe.teacher:
        for config, path in teacher.files.items():
            rows = [r for r in json.loads(Path(path).read_text()) if r["instruction"] in train]
            stats = result.manifest.configs[f"{teacher.name}-{config}"]
            assert stats["traces"] == len(rows)
            assert stats["kept"] == len(rows) - sum(stats["dropped"].values())
            loaded = load_dataset(str(snapshot), f"{teacher.name}-{config}", split="train")
            assert len(loaded) == stats["kept"]
            assert all(loaded["correct"])
    kept = result.manifest.configs["gpt-4o-cot-L1"]["kept"]
    assert kept < 700, "wrong teacher answers are dropped"


def test_svamp_paper_card_lists_accuracy_per_config(svamp_build):
    _, result, _ = svamp_build
    card = DatasetCard.load(result.run.dataset / "README.md")
    names = [c["config_name"] for c in card.data.configs]
    assert len(names) == 25 and names[-1] == "problems"
    assert sum(bool(c.get("default")) for c in card.data.configs) == 1
    assert card.data.source_datasets == ["ChilleD/SVAMP"] and card.data.license == "apache-2.0"
    for name, stats in result.manifest.configs.items():
        accuracy = f"{100 * stats['teacher_accuracy']:.1f}%"
        row = next(line for line in card.text.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"| {stats['kept']} |" in row and accuracy in row
    assert 0.95 < result.manifest.configs["gpt-4o-cot-L1"]["teacher_accuracy"] < 1.0
    assert (
        result.manifest.configs["gpt-4o-cot-L6"]["mean_tokens"]
        > 2 * result.manifest.configs["gpt-4o-cot-L1"]["mean_tokens"]
    )


def test_svamp_answer_only_and_reference_match_the_released_files(svamp_build, shared_data):
    _, _, snapshot = svamp_build
    folder = str(snapshot)
    released = shared_data / "paper-cot" / "svamp"
    only_answer = {
        r["instruction"]: r["output"].strip()
        for r in json.loads((released / "SVAMP_only_ans.json").read_text())
    }
    human = {
        r["instruction"]: r["output"]
        for r in json.loads((released / "svamp_human_annotation.json").read_text())
    }
    answer_only = load_dataset(folder, "answer-only", split="train")
    reference = load_dataset(folder, "reference", split="train")
    assert len(answer_only) == len(reference) == 700
    for row in answer_only:
        assert row["completion"][0]["content"] == f"The answer is {only_answer[row['question']]}."
    for row in reference:
        numbers = re.findall(r"\d+\.?\d*", row["completion"][0]["content"])
        assert set(numbers) >= set(re.findall(r"\d+\.?\d*", human[row["question"]].split("=")[0]))
    test = load_dataset(folder, "problems", split="test")
    assert len(test) == 300 and not set(test["question"]) & set(answer_only["question"])


def with_a_bad_row(tmp_path: Path, bad_rows: str | None) -> Path:
    path = synthetic_recipe(tmp_path)
    with (tmp_path / "problems.jsonl").open("a") as f:
        f.write(json.dumps({"id": "p5", "q": "   ", "a": "3"}) + "\n")
    recipe = yaml.safe_load(path.read_text())
    if bad_rows:
        recipe["source"]["bad_rows"] = bad_rows
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_bad_row_names_the_recipe_key_that_points_at_its_file(tmp_path, home):
    from factory.sources import SourceError

    path = with_a_bad_row(tmp_path, None)
    with pytest.raises(SourceError) as info:
        build_dataset(load_recipe(path), home)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "train:" in text)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: source.train: {tmp_path / 'problems.jsonl'} row 5")
    assert "empty" in message and "\n" not in message


def test_skipped_rows_are_counted_in_the_manifest_and_the_card(tmp_path, home):
    result = build_dataset(load_recipe(with_a_bad_row(tmp_path, "skip")), home)
    assert result.manifest.source["train"] == {"kept": 4, "skipped": {"empty question": 1}}
    card = DatasetCard.load(result.run.dataset / "README.md")
    assert "Source rows left out, by split and reason: train: 1 empty question." in card.text
