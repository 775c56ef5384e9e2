"""Recipes: strict validation with file:line: key-path errors, env interpolation, the hash."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from factory.recipe import RecipeError, load_recipe, teacher_name

ROOT = Path(__file__).resolve().parents[1]

VALID = """\
source:
  kind: gym
  dataset: chain_sum
  train: 8
teacher:
  backend: openai
  model: org/some-model
  base_url: http://127.0.0.1:1/v1
  api_key_env: null
cot:
  levels: [1, 3]
dataset:
  repo_id: local/tiny
"""


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    return str(info.value)


def test_valid_recipe_has_defaults_name_and_teacher_list(tmp_path):
    recipe = load_recipe(write(tmp_path, VALID, "my-study.yaml"))
    assert recipe.name == "my-study"
    assert recipe.cot.levels == [1, 3] and recipe.cot.formats == ["cot"]
    assert [teacher_name(t) for t in recipe.teacher] == ["some-model"]
    assert recipe.source.task == "math" and recipe.source.train == 8
    assert recipe.tag == f"recipe-{recipe.hash}" and len(recipe.hash) == 12


LEVELS = "  levels: [1, 3]"
BAD_CASES = [
    (LEVELS, LEVELS + "\n  levles: [2]", ":12: cot.levles: unknown key 'levles'"),
    (LEVELS, "  levels: [1, seven]", ":11: cot.levels[1]: Input should be a valid integer"),
    (LEVELS, "  levels: [1, 7]", ":11: cot.levels[1]: Input should be less than or equal to 6"),
    ("  model: org/some-model\n", "", ":5: teacher.model: required key is missing"),
    (
        "  repo_id: local/tiny",
        "  repo_id: no-namespace",
        ":13: dataset.repo_id: 'no-namespace' is not a repo id of the form namespace/name",
    ),
    ("  kind: gym", "  kind: ftp", ":2: source.kind: must be one of hub, files, alpaca, gym"),
    ("  backend: openai\n", "", ":5: teacher.backend: must be one of openai, transformers, replay"),
    (
        "  backend: openai",
        "  backend: openai\n  concurrency: many",
        ":7: teacher.concurrency: Input should be a valid integer",
    ),
    ("dataset:\n  repo_id: local/tiny\n", "", "dataset: required key is missing"),
    ("cot:", "students: [{model: x, lr: 1}]\ncot:", ":10: students[0].lr: unknown key 'lr'"),
]


@pytest.mark.parametrize(("old", "new", "expected"), BAD_CASES)
def test_bad_recipes_name_file_line_and_key(tmp_path, old, new, expected):
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new))
    message = error_of(path)
    assert str(path) in message
    assert expected in message


def test_every_error_is_reported_at_once(tmp_path):
    text = VALID.replace("  levels: [1, 3]", "  levels: [9]\n  formats: [prose]")
    message = error_of(write(tmp_path, text + "extra: 1\n"))
    assert "cot.levels[0]" in message and "cot.formats[0]" in message and "extra" in message


def test_replay_config_names_are_checked(tmp_path):
    text = VALID.replace(
        "  backend: openai\n  model: org/some-model\n  base_url: http://127.0.0.1:1/v1\n"
        "  api_key_env: null\n",
        "  backend: replay\n  name: paper\n  files: {cot-L9: a.json}\n",
    )
    assert "teacher.files: Value error" not in (message := error_of(write(tmp_path, text)))
    assert "'cot-L9' is not a config name" in message


def test_duplicate_teacher_names_are_rejected(tmp_path):
    teacher = "  - {backend: openai, model: a/m, api_key_env: null}\n"
    text = VALID.split("teacher:")[0] + "teacher:\n" + teacher * 2 + "cot:" + VALID.split("cot:")[1]
    assert "teacher names must be unique" in error_of(write(tmp_path, text))


def test_invalid_yaml_names_the_line(tmp_path):
    message = error_of(write(tmp_path, VALID + "students: [unclosed\n"))
    assert ":15: invalid YAML" in message


def test_missing_file_and_non_mapping(tmp_path):
    assert "no such recipe file" in error_of(tmp_path / "absent.yaml")
    assert "a YAML mapping of sections" in error_of(write(tmp_path, "- a\n- b\n"))


def test_environment_interpolation(tmp_path, monkeypatch):
    text = VALID.replace("org/some-model", "${TEACHER:-org/default}").replace(
        "train: 8", "train: ${N_TRAIN}"
    )
    path = write(tmp_path, text)
    monkeypatch.setenv("N_TRAIN", "5")
    recipe = load_recipe(path)
    assert recipe.teacher[0].model == "org/default" and recipe.source.train == 5
    monkeypatch.setenv("TEACHER", "org/chosen")
    assert load_recipe(path).teacher[0].model == "org/chosen"
    monkeypatch.delenv("N_TRAIN")
    message = error_of(path)
    assert ":4:" in message and "${N_TRAIN} is not set and has no default" in message


def test_hash_ignores_formatting_but_not_content(tmp_path):
    base = load_recipe(write(tmp_path, VALID)).hash
    reformatted = "# a comment\n" + VALID.replace("levels: [1, 3]", "levels:\n    - 1\n    - 3")
    (tmp_path / "b").mkdir()
    assert load_recipe(write(tmp_path / "b", reformatted)).hash == base
    changed = VALID.replace("levels: [1, 3]", "levels: [1, 4]")
    (tmp_path / "c").mkdir()
    assert load_recipe(write(tmp_path / "c", changed)).hash != base


def test_hash_covers_resolved_values_not_secrets(tmp_path, monkeypatch):
    """`TEACHER_MODEL=A` and `TEACHER_MODEL=B` are two builds; the API key is in neither."""
    text = VALID.replace("org/some-model", "${TEACHER_MODEL}").replace(
        "api_key_env: null", "api_key_env: MY_KEY"
    )
    path = write(tmp_path, text)
    hashes = {}
    for model in ("org/a", "org/b"):
        monkeypatch.setenv("TEACHER_MODEL", model)
        for key in ("sk-one", "sk-two"):
            monkeypatch.setenv("MY_KEY", key)
            hashes[model, key] = load_recipe(path).hash
    assert hashes["org/a", "sk-one"] == hashes["org/a", "sk-two"]
    assert hashes["org/b", "sk-one"] == hashes["org/b", "sk-two"]
    assert hashes["org/a", "sk-one"] != hashes["org/b", "sk-one"]


FILES_RECIPE = """\
source: {kind: files, train: DATA}
dataset: {repo_id: local/files}
"""


def test_hash_covers_the_content_of_local_files_not_their_path(tmp_path):
    first, second = tmp_path / "one" / "train.jsonl", tmp_path / "two" / "data.jsonl"
    for file in (first, second):
        file.parent.mkdir()
        file.write_text('{"question": "1 + 1?", "answer": "2"}\n')
    recipe_a = write(tmp_path, FILES_RECIPE.replace("DATA", str(first)), "study.yaml")
    hash_a = load_recipe(recipe_a).hash
    (tmp_path / "r2").mkdir()
    recipe_b = write(tmp_path / "r2", FILES_RECIPE.replace("DATA", str(second)), "study.yaml")
    assert load_recipe(recipe_b).hash == hash_a
    first.write_text('{"question": "1 + 1?", "answer": "3"}\n')
    assert load_recipe(recipe_a).hash != hash_a


def test_missing_local_file_is_a_recipe_error_with_its_key(tmp_path):
    path = write(tmp_path, FILES_RECIPE.replace("DATA", str(tmp_path / "absent.jsonl")))
    message = error_of(path)
    assert f"{path}:1: source.train: cannot read {tmp_path / 'absent.jsonl'}" in message


@pytest.mark.parametrize(
    "name", ["quickstart", "svamp-paper", "svamp-better", "gsm8k-openai", "gsm8k-reasoning"]
)
def test_shipped_recipes_validate(name):
    """Their schema, without reading the data files they name (svamp-paper's live in
    ../shared/data, which CI does not have)."""
    recipe = load_recipe(ROOT / "recipes" / f"{name}.yaml", inputs=False)
    assert recipe.name == name
    assert recipe.path.read_text().startswith(f"# {name}:"), "a recipe opens with what it studies"


def test_the_svamp_paper_recipe_hashes_its_data_files(shared_data, monkeypatch):
    monkeypatch.setenv("PAPER_COT_DIR", str(shared_data / "paper-cot"))
    monkeypatch.setenv("SVAMP_DIR", str(shared_data / "svamp"))
    with_files = load_recipe(ROOT / "recipes" / "svamp-paper.yaml")
    by_path = load_recipe(ROOT / "recipes" / "svamp-paper.yaml", inputs=False)
    assert with_files.hash != by_path.hash, "the data files count by their content"


SHARED = """\
source: {kind: hub, dataset: org/problems, revision: 2024-01-01}
teacher:
  - &t {backend: openai, model: org/a, base_url: "http://h:1/v1", api_key_env: null}
  - <<: *t
    model: org/b
    concurrency: many
dataset: {repo_id: local/tiny}
"""


def test_anchors_merge_keys_and_dates_still_read(tmp_path):
    """The bounded reader keeps YAML's sharing (anchors, `<<` merges); a date stays text."""
    assert ":6: teacher[1].concurrency: Input should be a valid integer" in error_of(
        write(tmp_path, SHARED)
    )
    recipe = load_recipe(write(tmp_path, SHARED.replace("    concurrency: many\n", "")))
    assert [(t.model, t.base_url) for t in recipe.teacher] == [
        ("org/a", "http://h:1/v1"),
        ("org/b", "http://h:1/v1"),
    ]
    assert recipe.source.revision == "2024-01-01"


def test_a_recipe_locates_its_keys_and_reads_a_utf8_bom(tmp_path):
    recipe = load_recipe(write(tmp_path, VALID))
    assert recipe.where(("cot", "levels")) == f"{recipe.path}:11"
    assert recipe.where(("teacher", "api_key_env")) == f"{recipe.path}:9"
    assert recipe.where(("cot", "levels", 1)) == f"{recipe.path}:11"
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + VALID.encode())
    assert load_recipe(path).cot.levels == [1, 3]


def test_api_key_env_may_come_from_a_variable(tmp_path, monkeypatch):
    """As in recipes/gsm8k-openai.yaml: the variable names the key's variable, not the key."""
    path = write(tmp_path, VALID.replace("null", "${TEACHER_API_KEY_ENV:-OPENAI_API_KEY}"))
    monkeypatch.delenv("TEACHER_API_KEY_ENV", raising=False)
    assert load_recipe(path).teacher[0].api_key_env == "OPENAI_API_KEY"
    monkeypatch.setenv("TEACHER_API_KEY_ENV", "HF_TOKEN")
    assert load_recipe(path).teacher[0].api_key_env == "HF_TOKEN"


def test_eval_split_is_gone_and_says_where_evaluation_happens(tmp_path):
    message = error_of(write(tmp_path, VALID + "eval:\n  split: validation\n"))
    assert (
        ":14: eval: there is no eval.split: students are evaluated on the source's test" in message
    )
