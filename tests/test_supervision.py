"""Supervision tools: mixtures of configs and decontamination against evaluation sets, on the
four-problem synthetic recipe of tests/test_build.py (and a tiny student for a mixture)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from huggingface_hub import DatasetCard
from test_build import PROBLEMS, synthetic_recipe

from factory.contamination import Index, words
from factory.recipe import RecipeError, load_recipe
from factory.run import build_dataset
from factory.shards import load_config

LONG = (  # an evaluation question sharing a run of 13 words with a longer question, and of 8
    # with p1's question (11 words)
    "Before lunch, Ann has 3 apples and buys 4 more. How many apples does she have now, in total"
)


def edit(path: Path, **sections) -> Path:
    """The recipe at `path` with `sections` set (merged into a section that is a mapping)."""
    recipe = yaml.safe_load(path.read_text())
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict) and key != "mixtures":
            recipe[key].update(value)
        else:
            recipe[key] = value
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def with_two_levels(tmp_path: Path) -> Path:
    """The synthetic recipe with a second replay file, `cot-L3`, whose p1 rationale is the same
    text as `cot-L2`'s and whose p4 rationale is new."""
    path = synthetic_recipe(tmp_path)
    by_id = {p["id"]: p for p in PROBLEMS}
    level3 = [
        {"instruction": by_id["p1"]["q"], "output": "  3 + 4 = 7 apples.<br>The answer is 7"},
        {"instruction": by_id["p4"]["q"], "output": "9 - 2 = 7 stamps left. The answer is 7"},
    ]
    (tmp_path / "teacher_l3.json").write_text(json.dumps(level3))
    recipe = yaml.safe_load(path.read_text())
    recipe["teacher"]["files"]["cot-L3"] = str(tmp_path / "teacher_l3.json")
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


# --- mixtures ---------------------------------------------------------------------------------


def test_a_mixture_is_the_union_of_its_configs_deduplicated_with_its_sources(tmp_path, home):
    path = edit(with_two_levels(tmp_path), mixtures={"mix-cot": ["cot-L2", "cot-L3"]})
    done = build_dataset(load_recipe(path), home)
    stats = done.manifest.configs
    assert (stats["cot-L2"]["kept"], stats["cot-L3"]["kept"]) == (1, 2)
    rows = load_config(done.run.dataset, "mix-cot")
    assert len(rows) == 2, "p1's identical rationale appears once"
    assert sorted(zip(rows["id"], rows["source_config"], strict=True)) == [
        ("p1", "cot-L2"),
        ("p4", "cot-L3"),
    ]
    assert stats["mix-cot"]["composition"] == {"cot-L2": 1, "cot-L3": 1}
    assert stats["mix-cot"]["teacher"] == "mixture" and stats["mix-cot"]["level"] is None
    card = DatasetCard.load(done.run.dataset / "README.md")
    assert "mix-cot" in {c["config_name"] for c in card.data.configs}
    assert "`mix-cot` = `cot-L2` 1 + `cot-L3` 1 rows" in card.text
    assert set(load_config(done.run.dataset, "cot-L2")["source_config"]) == {"cot-L2"}


def test_a_mixture_takes_a_stable_share_of_each_config(tmp_path, home):
    path = edit(with_two_levels(tmp_path), mixtures={"some": {"cot-L3": 1.0, "answer-only": 0.5}})
    first = load_config(build_dataset(load_recipe(path), home).run.dataset, "some").to_list()
    assert sum(r["source_config"] == "answer-only" for r in first) == 2, "half of 4, rounded up"
    assert sum(r["source_config"] == "cot-L3" for r in first) == 2
    again = load_config(build_dataset(load_recipe(path), tmp_path / "h2").run.dataset, "some")
    assert again.to_list() == first


@pytest.mark.parametrize(
    ("mixtures", "message"),
    [
        ({"mix": ["cot-L2"]}, "a mixture needs at least two configs"),
        ({"mix": ["cot-L2", "cot-L9"]}, "'cot-L9' is not built by this recipe"),
        ({"answer-only": ["cot-L2", "cot-L3"]}, "'answer-only' is already a config"),
        ({"mix": {"cot-L2": 0, "cot-L3": 1}}, "greater than 0"),
        ({"../up": ["cot-L2", "cot-L3"]}, "is not a safe name"),
    ],
)
def test_bad_mixtures_are_recipe_errors(tmp_path, mixtures, message):
    path = edit(with_two_levels(tmp_path), mixtures=mixtures)
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(path)
    assert str(info.value).startswith(f"{path}:") and "mixtures" in str(info.value)


@pytest.mark.slow
def test_a_mixture_trains_like_any_config(tmp_path, tiny_model_dir, home):
    from test_train import toy_recipe

    from factory.train import train_student

    path = toy_recipe(tmp_path, tiny_model_dir, name="mixed")
    recipe = yaml.safe_load(path.read_text())
    recipe["source"]["columns"] = {"rationale": "metadata.expression"}
    recipe["cot"]["reference"] = True
    recipe["mixtures"] = {"both": ["answer-only", "reference"]}
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    loaded = load_recipe(path)
    done = build_dataset(loaded, home)
    assert done.manifest.configs["both"]["kept"] == 32
    result = train_student(
        loaded, loaded.students[0], "both", done.run.dataset, tmp_path / "run", home
    )
    assert result.metrics["rows"] == 32 and result.metrics["steps"] > 0


# --- decontamination --------------------------------------------------------------------------


def test_words_and_the_index_match_normalised_text_and_shared_runs():
    assert words("Ann's 3 apples, (and) 4!") == ["ann", "s", "3", "apples", "and", "4"]
    index = Index(ngram=13)
    index.add("gsm", [LONG])
    index.add("test", ["A BOX has 10 pens; 6 are taken -- how many are left?"])
    assert index.matches("Ann has 3 apples and buys 4 more. How many apples does she have now?")
    assert index.matches("A box has 10 pens. 6 are taken. How many are left") == ["test"]
    assert index.matches("Tom reads 5 pages a day for 3 days. How many pages?") == []
    short = Index(ngram=13)
    short.add("s", ["Ann has 3 apples and buys 4 more"])  # 8 words: only an exact match counts
    assert short.matches("Ann has 3 apples and buys 4 more, she says") == []


def planted(tmp_path: Path, action: str) -> Path:
    """The synthetic recipe with contamination planted: its test question is p2's in other case
    and punctuation, and an extra evaluation file holds a question sharing 8 words with p1's
    (the recipe's n-gram size, here 8)."""
    path = synthetic_recipe(tmp_path)
    (tmp_path / "test.jsonl").write_text(
        json.dumps(
            {"id": "t1", "q": "a BOX has 10 pens, 6 are taken... How many are LEFT", "a": "4"}
        )
        + "\n"
    )
    (tmp_path / "gsm.jsonl").write_text(json.dumps({"problem": LONG}) + "\n")
    against = [{"name": "gsm", "files": str(tmp_path / "gsm.jsonl"), "column": "problem"}]
    return edit(path, cot={"decontaminate": {"action": action, "ngram": 8, "against": against}})


def test_report_flags_contaminated_rows_and_counts_them_in_the_card(tmp_path, home):
    done = build_dataset(load_recipe(planted(tmp_path, "report")), home)
    stats = done.manifest.configs
    assert stats["answer-only"]["contamination"] == {"gsm": 1, "test": 1}
    assert stats["answer-only"]["kept"] == 4, "report keeps them"
    rows = {r["id"]: r["contaminated_by"] for r in load_config(done.run.dataset, "answer-only")}
    assert rows == {"p1": ["gsm"], "p2": ["test"], "p3": [], "p4": []}
    card = DatasetCard.load(done.run.dataset / "README.md").text
    assert "checked against `test`, `gsm`" in card and "a shared run of 8 words" in card
    assert "`answer-only`: 1 in `gsm`, 1 in `test`" in card and "kept and flagged" in card


def test_drop_removes_contaminated_rows_with_their_own_reason(tmp_path, home):
    done = build_dataset(load_recipe(planted(tmp_path, "drop")), home)
    stats = done.manifest.configs["answer-only"]
    assert stats["kept"] == 2 and stats["dropped"] == {"contaminated": 2}
    assert sorted(load_config(done.run.dataset, "answer-only")["id"]) == ["p3", "p4"]
    assert (
        "Rows whose question matched (dropped)"
        in DatasetCard.load(done.run.dataset / "README.md").text
    )


def test_a_clean_build_says_so(tmp_path, home):
    done = build_dataset(load_recipe(synthetic_recipe(tmp_path)), home)
    assert all(s["contamination"] == {} for s in done.manifest.configs.values())
    assert (
        "checked against `test` (the same normalised text"
        in DatasetCard.load(done.run.dataset / "README.md").text
    )


@pytest.mark.parametrize(
    ("against", "message"),
    [
        ([{"name": "x"}], "give exactly one of `files` and `hub`"),
        ([{"name": "x", "files": "a.jsonl", "hub": "o/d"}], "give exactly one of"),
        ([{"name": "test", "hub": "o/d"}], "`test` is the recipe's own test split"),
    ],
)
def test_bad_evaluation_sets_are_recipe_errors(tmp_path, against, message):
    path = edit(synthetic_recipe(tmp_path), cot={"decontaminate": {"against": against}})
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)


def test_the_evaluation_files_count_in_the_build_identity(tmp_path):
    path = planted(tmp_path, "report")
    before = load_recipe(path).hash
    (tmp_path / "gsm.jsonl").write_text(json.dumps({"problem": "Something else."}) + "\n")
    assert load_recipe(path).hash != before


# --- teacher usage and cost -------------------------------------------------------------------


@pytest.mark.slow
def test_usage_is_summed_per_config_priced_and_shown_in_the_card(tmp_path, home):
    """The fake endpoint counts words as tokens in every answer's `usage`; the build sums what
    it sent, per config, and prices it with `teacher.price`."""
    from fake_openai import FakeOpenAI
    from test_generate import fake_teacher, write_recipe

    server = FakeOpenAI().start()
    try:
        teacher = fake_teacher(server, price={"input": 2.0, "output": 10.0})
        path = write_recipe(tmp_path, teacher, train=4, levels=(1, 2))
        done = build_dataset(load_recipe(path), home)
        asked = list(server.requests)
        again = build_dataset(load_recipe(path), home)
    finally:
        server.stop()
    assert len(asked) == 8 and len(server.requests) == 8, "the re-run asks nothing"
    for level in (1, 2):
        bodies = [b for b in asked if f"level {level}" in json.dumps(b["messages"]).lower()]
        prompt = sum(len(b["messages"][-1]["content"].split()) for b in bodies)
        usage = done.manifest.configs[f"cot-L{level}"]["usage"]
        assert usage["requests"] == 4 and usage["unknown"] == 0
        assert usage["prompt_tokens"] == prompt and usage["completion_tokens"] == 4 * 12
        assert usage["cost"] == round((prompt * 2.0 + 48 * 10.0) / 1e6, 4)
    assert again.manifest.configs["cot-L1"]["usage"] == done.manifest.configs["cot-L1"]["usage"]
    card = DatasetCard.load(done.run.dataset / "README.md").text
    usage = done.manifest.configs["cot-L1"]["usage"]
    row = f"| `cot-L1` | 4 | {usage['prompt_tokens']} | 48 | 0 | {usage['cost']} |"
    assert "**Teacher usage**" in card and row in card


# --- k verified samples per problem -----------------------------------------------------------

EXPRESSION = re.compile(r"(-?\d+(?:\s*[-+]\s*\d+)+)\s*=")


def right_on_odd_seeds(body: dict) -> str:
    """A teacher that gets a sum right only when the request's seed is odd, saying so in words
    that differ by seed (so two right answers are not duplicates)."""
    problem = body["messages"][-1]["content"].split("Problem:")[-1]
    terms = re.findall(r"[-+]?\s*\d+", EXPRESSION.search(problem).group(1))
    total = sum(int(t.replace(" ", "")) for t in terms)
    answer = total if body["seed"] % 2 else total + 1
    return f"Attempt {body['seed']}: I add the terms in order.\nThe answer is {answer}."


def sampled(tmp_path: Path, fake, samples: int, max_attempts: int | None) -> Path:
    from test_generate import fake_teacher, write_recipe

    teacher = fake_teacher(fake, temperature=0.7, seed=0)
    path = write_recipe(tmp_path, teacher, train=3, samples=samples)
    return edit(path, cot={"max_attempts": max_attempts})


@pytest.fixture
def fair_coin():
    from fake_openai import FakeOpenAI

    server = FakeOpenAI(writes=right_on_odd_seeds).start()
    yield server
    server.stop()


@pytest.mark.slow
def test_sampling_continues_until_k_traces_verify(fair_coin, tmp_path, home):
    done = build_dataset(load_recipe(sampled(tmp_path, fair_coin, 2, 6)), home)
    assert len(fair_coin.requests) == 3 * 4, "samples 0-3 per problem: two wrong, two right"
    assert sorted({b["seed"] for b in fair_coin.requests}) == [0, 1, 2, 3]
    stats = done.manifest.configs["cot-L1"]
    assert (stats["traces"], stats["kept"], stats["dropped"]) == (12, 6, {"wrong": 6})
    assert stats["pass_rate"] == 0.5 and stats["solved_share"] == 1.0
    assert stats["difficulty"] == {
        "0%": 0,
        "1-25%": 0,
        "26-50%": 3,
        "51-75%": 0,
        "76-99%": 0,
        "100%": 0,
    }
    rows = load_config(done.run.dataset, "cot-L1")
    assert sorted(rows["sample"]) == [1, 1, 1, 3, 3, 3] and set(rows["pass_rate"]) == {0.5}
    card = DatasetCard.load(done.run.dataset / "README.md").text
    assert "until 2 trace(s) per problem and config\nverified, or 6 attempt(s) ran out" in card
    assert "| `cot-L1` | 12 | 6 | 50.0% | 100.0% | 0 · 0 · 3 · 0 · 0 · 0 |" in card


@pytest.mark.slow
def test_the_attempt_budget_is_respected(fair_coin, tmp_path, home):
    done = build_dataset(load_recipe(sampled(tmp_path, fair_coin, 2, 3)), home)
    assert len(fair_coin.requests) == 3 * 3
    assert done.manifest.configs["cot-L1"]["kept"] == 3, "one verified trace each, budget spent"


@pytest.mark.slow
def test_raising_k_asks_only_for_the_new_samples(fair_coin, tmp_path, home):
    build_dataset(load_recipe(sampled(tmp_path, fair_coin, 2, 6)), home)
    assert len(fair_coin.requests) == 12
    done = build_dataset(load_recipe(sampled(tmp_path, fair_coin, 3, 6)), home)
    assert len(fair_coin.requests) == 12 + 3 * 2, "samples 4 (wrong) and 5 (right) only"
    assert done.manifest.configs["cot-L1"]["kept"] == 9


def test_max_attempts_below_samples_is_a_recipe_error(tmp_path):
    from test_generate import write_recipe

    path = write_recipe(
        tmp_path, {"backend": "openai", "model": "m", "api_key_env": None}, samples=3
    )
    with pytest.raises(RecipeError, match=r"cot.max_attempts: must be at least cot.samples \(3\)"):
        load_recipe(edit(path, cot={"max_attempts": 2}))


@pytest.mark.slow
def test_a_teacher_limit_asks_about_the_first_problems_only(tmp_path, home):
    from fake_openai import FakeOpenAI
    from test_generate import fake_teacher, write_recipe

    server = FakeOpenAI().start()
    try:
        path = write_recipe(tmp_path, fake_teacher(server, limit=2), train=5)
        done = build_dataset(load_recipe(path), home)
    finally:
        server.stop()
    assert len(server.requests) == 2
    stats = done.manifest.configs["cot-L1"]
    assert stats["problems_answered"] == 2 and stats["problems_missing"] == 3
    card = DatasetCard.load(done.run.dataset / "README.md").text
    assert "asked about the first 2 training problems" in card
