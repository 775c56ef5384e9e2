"""`cot-factory space build`: a self-contained Space folder with valid Space YAML, for both
targets, published like every other artifact."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from huggingface_hub import SpaceCard
from test_train import toy_recipe

from factory.pipeline import run_recipe
from factory.publish import publish_folder
from factory.recipe import load_recipe
from factory.space import build_space, space_repo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def published(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("space-build")
    recipe = load_recipe(toy_recipe(tmp, tiny_model_dir, name="spacey"))
    home = tmp / "home"
    built, results = run_recipe(recipe, home)
    return recipe, home, built, results


def test_local_space_folder_is_self_contained(published):
    recipe, home, built, (result,) = published
    folder = build_space(recipe, home, "local")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "answers.py",
        "app.py",
        "requirements.txt",
        "space_config.json",
    ]
    assert (folder / "app.py").read_bytes() == (ROOT / "spaces" / "app.py").read_bytes()
    assert (folder / "answers.py").read_bytes() == (ROOT / "factory" / "answers.py").read_bytes()
    assert "import factory" not in (folder / "app.py").read_text()
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert f"peft=={metadata.version('peft')}" in requirements
    assert not any(line.startswith("gradio") for line in requirements), "pinned by sdk_version"

    config = json.loads((folder / "space_config.json").read_text())
    (adapter,) = config["adapters"]
    assert adapter["label"] == "answer-only" and Path(adapter["repo"]) == result.folder
    assert config["base_model"] == recipe.students[0].model
    assert Path(config["dataset"]["repo"]).is_dir() and config["dataset"]["split"] == "test"
    (row,) = config["leaderboard"]
    assert row["accuracy"] == result.distilled["accuracy"] and row["n"] == 8
    assert row["base_accuracy"] == result.base["accuracy"]
    assert config["max_new_tokens"] == recipe.eval.max_new_tokens


def test_space_readme_has_valid_space_yaml(published):
    recipe, home, *_ = published
    card = SpaceCard.load(build_space(recipe, home, "local") / "README.md")
    data = card.data
    assert data.sdk == "gradio" and data.sdk_version == metadata.version("gradio")
    assert data.app_file == "app.py" and data.datasets == ["local/toy"]
    assert data.models == ["local/tiny-spacey-answer-only"]
    assert data.suggested_hardware == "cpu-basic" and data.pinned is False
    assert 0 < len(data.short_description) <= 60 and len(data.title) <= 60
    assert "| tiny | `answer-only` |" in card.text


def test_hf_space_config_names_repos_and_revisions(published, fake_hub):
    recipe, home, built, _ = published
    path = recipe.path
    text = yaml.safe_load(path.read_text())
    text["dataset"]["repo_id"] = "tester/spacey"
    text["target"] = "hf"
    path.write_text(yaml.safe_dump(text, sort_keys=False))
    hub_recipe = load_recipe(path)
    run_recipe(hub_recipe, home)
    folder = build_space(hub_recipe, home, "hf")
    config = json.loads((folder / "space_config.json").read_text())
    (adapter,) = config["adapters"]
    assert adapter["repo"] == "tester/tiny-spacey-answer-only"
    assert adapter["revision"] == fake_hub.head("tester/tiny-spacey-answer-only", "model")
    assert config["dataset"]["repo"] == "tester/spacey"
    assert config["dataset"]["revision"] == fake_hub.head("tester/spacey", "dataset")
    assert space_repo(hub_recipe) == "tester/spacey-demo"
    publish_folder(folder, space_repo(hub_recipe), "space", hub_recipe, home, "hf", "demo")
    card = SpaceCard.load("tester/spacey-demo", repo_type="space")
    assert card.data.sdk == "gradio" and card.data.models == ["tester/tiny-spacey-answer-only"]


def test_a_space_without_published_students_says_how_to_publish_them(tmp_path, tiny_model_dir):
    from factory.pipeline import build_dataset
    from factory.publish import publish_dataset
    from factory.recipe import RecipeError

    recipe = load_recipe(toy_recipe(tmp_path, tiny_model_dir, name="unpublished"))
    home = tmp_path / "home"
    build_dataset(recipe, home)
    publish_dataset(recipe, home)
    with pytest.raises(RecipeError, match=r"no published student 'tiny' for the Space: "):
        build_space(recipe, home, "local")
