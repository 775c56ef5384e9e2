"""The `hf` target against a Hub-compatible server on loopback (tests/fake_hub.py), driving the
real huggingface_hub, datasets and peft clients: publish, republish, tags, pull, reproduce,
faults and errors."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datasets import load_dataset
from huggingface_hub import HfApi, ModelCard
from test_build import synthetic_recipe
from test_train import toy_recipe

import factory.hub.hf
from factory.hub import HubError
from factory.hub.hf import HfHub
from factory.recipe import load_recipe
from factory.run import build_dataset, publish_dataset, reproduce, run_recipe
from factory.shards import load_config

pytestmark = pytest.mark.slow  # starts servers or trains models


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(factory.hub.hf, "BACKOFF", 0.01)


def on_hub(path: Path, repo_id: str) -> Path:
    """The recipe at `path`, publishing to the Hub under `repo_id`."""
    recipe = yaml.safe_load(path.read_text())
    recipe["dataset"]["repo_id"] = repo_id
    recipe["target"] = "hf"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def commits(fake_hub, repo_id: str) -> list:
    return [r for r in fake_hub.requests if r.method == "POST" and f"{repo_id}/commit/" in r.path]


def test_dataset_publishes_in_one_commit_tagged_and_loads_per_config(
    fake_hub, hf_api, tmp_path, home
):
    recipe = load_recipe(on_hub(synthetic_recipe(tmp_path), "tester/synthetic"))
    built = build_dataset(recipe, home)
    fake_hub.clear_log()
    published = publish_dataset(recipe, home)

    assert published.created and len(published.commit) == 40 and published.path is None
    assert len(commits(fake_hub, "tester/synthetic")) == 1
    refs = hf_api.list_repo_refs("tester/synthetic", repo_type="dataset")
    assert {t.name: t.target_commit for t in refs.tags} == {recipe.tag: published.commit}
    for config in ("cot-L2", "answer-only"):
        remote = load_dataset("tester/synthetic", config, split="train", revision=recipe.tag)
        local = load_config(built.run.dataset, config)
        assert remote.to_list() == local.to_list()
    test = load_dataset("tester/synthetic", "problems", split="test", revision=published.commit)
    assert test["id"] == ["t1"]
    manifest = json.loads((built.run.root / "manifest.json").read_text())
    assert manifest["dataset"]["commit"] == published.commit
    assert manifest["dataset"]["target"] == "hf"

    fake_hub.clear_log()
    again = publish_dataset(recipe, home)
    assert not again.created and again.commit == published.commit
    assert commits(fake_hub, "tester/synthetic") == [], "an unchanged folder makes no commit"


def test_changed_recipe_makes_a_new_commit_and_tag(hf_api, tmp_path, home):
    path = on_hub(synthetic_recipe(tmp_path), "tester/evolving")
    first_recipe = load_recipe(path)
    build_dataset(first_recipe, home)
    first = publish_dataset(first_recipe, home)
    path.write_text(path.read_text().replace("A four-problem check.", "A changed description."))
    second_recipe = load_recipe(path)
    build_dataset(second_recipe, home)
    second = publish_dataset(second_recipe, home)

    assert second.created and second.commit != first.commit
    tags = {
        t.name: t.target_commit
        for t in hf_api.list_repo_refs("tester/evolving", repo_type="dataset").tags
    }
    assert tags == {first_recipe.tag: first.commit, second_recipe.tag: second.commit}
    old = load_dataset("tester/evolving", "answer-only", split="train", revision=first_recipe.tag)
    assert len(old) == 4


def test_students_publish_load_with_peft_and_reproduce_from_the_hub(
    fake_hub, tiny_model_dir, tmp_path, home
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    recipe = load_recipe(on_hub(toy_recipe(tmp_path, tiny_model_dir), "tester/toy"))
    built, (result,) = run_recipe(recipe, home)
    repo = result.published.repo_id
    distilled = json.loads((Path(result.release) / "eval_results.json").read_text())
    assert repo == "tester/tiny-toy-answer-only"
    card = ModelCard.load(repo)
    assert card.data.library_name == "peft" and card.data.datasets == ["tester/toy"]
    assert card.data.eval_results[0].dataset_revision == fake_hub.head("tester/toy", "dataset")
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), repo, revision=recipe.tag
    )
    assert any("lora_B" in name for name, _ in model.named_parameters())

    someone_else = tmp_path / "someone-else"
    someone_else.mkdir()
    reproduction = reproduce(repo, recipe.tag, "hf", someone_else)
    assert reproduction.dataset.commit == card.data.eval_results[0].dataset_revision
    assert reproduction.reproduced == reproduction.published == distilled
    assert reproduction.difference == 0.0

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "factory.cli",
            "reproduce",
            repo,
            "--target",
            "hf",
            "--home",
            str(someone_else),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert re.search(
        r"^difference\s+\+0\.0 pp \(within the card's 95% interval\)$", out.stdout, re.MULTILINE
    ), out.stdout


def test_tags_never_move_on_the_hub(fake_hub, hf_api, tmp_path, caplog):
    hub = HfHub(hf_api)

    def folder(name: str, text: str) -> Path:
        (tmp_path / name).mkdir()
        (tmp_path / name / "README.md").write_text(text)
        return tmp_path / name

    v1, v2, v3 = folder("v1", "one\n"), folder("v2", "two\n"), folder("v3", "three\n")
    first = hub.publish(v1, "tester/tags", "model", tag="t1", message="one")
    second = hub.publish(v2, "tester/tags", "model", tag="t2", message="two")

    fake_hub.clear_log()
    back = hub.publish(v1, "tester/tags", "model", tag="t1", message="one again")
    assert back.commit == first.commit and not back.created, "the tag already holds the folder"
    assert commits(fake_hub, "tester/tags") == [] and fake_hub.head("tester/tags") == second.commit

    caplog.set_level(logging.WARNING)
    third = hub.publish(v3, "tester/tags", "model", tag="t1", message="three")
    assert third.created and fake_hub.head("tester/tags") == third.commit
    assert "tag t1 on tester/tags stays on" in caplog.text
    fake_hub.clear_log()
    same = hub.publish(v3, "tester/tags", "model", tag=None, message="unchanged")
    assert same.commit == third.commit and not same.created
    assert commits(fake_hub, "tester/tags") == [], "huggingface_hub skips the empty commit"
    tags = {t.name: t.target_commit for t in hf_api.list_repo_refs("tester/tags").tags}
    assert tags == {"t1": first.commit, "t2": second.commit}
    assert not [r for r in fake_hub.requests if r.method == "DELETE"], "no tag was deleted"


def test_space_folder_publishes_and_reads_back(hf_api, tmp_path, home):
    from huggingface_hub import SpaceCard

    folder = tmp_path / "space"
    folder.mkdir()
    (folder / "README.md").write_text(
        "---\ntitle: Try students\nsdk: gradio\nsdk_version: 5.0.0\napp_file: app.py\n---\n# Demo\n"
    )
    (folder / "app.py").write_text("print('hello')\n")
    (folder / "requirements.txt").write_text("peft\n")
    published = HfHub(hf_api).publish(folder, "tester/demo", "space", tag="recipe-x", message="m")
    card = SpaceCard.load("tester/demo", repo_type="space")
    assert card.data.sdk == "gradio" and card.data.title == "Try students"
    info = hf_api.space_info("tester/demo")
    assert info.sha == published.commit and info.sdk == "gradio"


def test_pull_command_from_the_hub(tmp_path, home):
    recipe = load_recipe(on_hub(synthetic_recipe(tmp_path), "tester/pullable"))
    build_dataset(recipe, home)
    published = publish_dataset(recipe, home)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "factory.cli",
            "pull",
            "tester/pullable",
            "--target",
            "hf",
            "--revision",
            recipe.tag,
            "--to",
            str(tmp_path / "pulled-from-hub"),
            "--home",
            str(home),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"dataset tester/pullable @ {published.commit}"
    assert len(load_dataset(str(tmp_path / "pulled-from-hub"), "answer-only", split="train")) == 4


@pytest.mark.parametrize("verbose", [False, True])
def test_publishing_to_the_hub_keeps_request_logs_to_verbose(tmp_path, home, verbose):
    """The terminal gets the summary; every HTTP request of huggingface_hub's client only with
    -v (it used to log each one at INFO)."""
    recipe = on_hub(synthetic_recipe(tmp_path), f"tester/quiet-{int(verbose)}")
    command = [sys.executable, "-m", "factory.cli", "build", str(recipe), "--publish"]
    out = subprocess.run(
        [*command, "--home", str(home), *(["-v"] if verbose else [])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "published dataset tester/quiet" in out.stdout
    assert ("HTTP Request:" in out.stderr) is verbose, out.stderr[-2000:]


# --- faults and errors ------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [429, 500, 503, "drop"])
def test_transient_failures_are_retried(fault, fake_hub, tmp_path, home):
    recipe = load_recipe(on_hub(synthetic_recipe(tmp_path), f"tester/flaky-{fault}"))
    build_dataset(recipe, home)
    fake_hub.fail_next(fault, count=2, path_contains="/commit/")
    published = publish_dataset(recipe, home)
    assert published.created
    rows = load_dataset(published.repo_id, "answer-only", split="train", revision=recipe.tag)
    assert len(rows) == 4 and rows[0]["completion"][0]["content"].startswith("The answer is")


def test_rate_limits_wait_as_long_as_the_hub_asks(fake_hub, monkeypatch, tmp_path, home):
    waits = []
    monkeypatch.setattr(factory.hub.hf.time, "sleep", waits.append)
    recipe = load_recipe(on_hub(synthetic_recipe(tmp_path), "tester/rate-limited"))
    build_dataset(recipe, home)
    fake_hub.fail_next(429, path_contains="/commit/")
    assert publish_dataset(recipe, home).created
    assert waits == [1.0], "the fake Hub's 429 says Retry-After: 1"


def test_a_concurrent_change_is_a_clear_error(fake_hub, hf_api, monkeypatch, tmp_path, home):
    recipe = load_recipe(on_hub(synthetic_recipe(tmp_path), "tester/contested"))
    built = build_dataset(recipe, home)
    ours = HfApi.upload_folder

    def someone_else_commits_first(self, **kwargs):
        hf_api.upload_file(
            path_or_fileobj=b"theirs\n",
            path_in_repo="NOTES.md",
            repo_id="tester/contested",
            repo_type="dataset",
        )
        return ours(self, **kwargs)

    monkeypatch.setattr(HfApi, "upload_folder", someone_else_commits_first)
    with pytest.raises(HubError) as info:
        publish_dataset(recipe, home)
    message = str(info.value)
    assert "tester/contested changed while publishing (412" in message
    assert "Nothing was published to tester/contested" in message
    files = hf_api.list_repo_files("tester/contested", repo_type="dataset")
    assert "NOTES.md" in files and not any(f.endswith(".parquet") for f in files), files
    manifest = json.loads((built.run.root / "manifest.json").read_text())
    assert manifest.get("dataset") is None


def test_a_commit_whose_answer_was_lost_still_counts(fake_hub, tmp_path, home):
    recipe = load_recipe(on_hub(synthetic_recipe(tmp_path), "tester/lost-answer"))
    build_dataset(recipe, home)
    fake_hub.fail_next("drop_after", path_contains="/commit/")
    published = publish_dataset(recipe, home)
    assert published.commit == fake_hub.head("tester/lost-answer", "dataset")
    assert len(commits(fake_hub, "tester/lost-answer")) >= 1


def test_exhausted_retries_fail_clearly_and_claim_nothing(fake_hub, tmp_path, home):
    recipe = load_recipe(on_hub(synthetic_recipe(tmp_path), "tester/down"))
    built = build_dataset(recipe, home)
    fake_hub.fail_next(503, count=100, path_contains="/commit/")
    with pytest.raises(HubError) as info:
        publish_dataset(recipe, home)
    message = str(info.value)
    assert "tester/down" in message and "503" in message and "Nothing was published" in message
    manifest = json.loads((built.run.root / "manifest.json").read_text())
    assert manifest.get("dataset") is None


def test_token_errors_name_the_repo_and_the_permission(fake_hub, monkeypatch, tmp_path, home):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "README.md").write_text("x\n")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(
        HubError, match="no Hugging Face token. Set HF_TOKEN or run `hf auth login`"
    ):
        HfHub(HfApi(endpoint=fake_hub.url)).publish(
            folder, "tester/x", "model", tag=None, message="m"
        )
    with pytest.raises(HubError, match=r"refused the token \(401\)"):
        HfHub(HfApi(endpoint=fake_hub.url, token="hf_wrong")).publish(
            folder, "tester/x", "model", tag=None, message="m"
        )
    with pytest.raises(HubError, match=r"may not write to cot-org/x \(403\).*'cot-org'"):
        HfHub(HfApi(endpoint=fake_hub.url, token=fake_hub.read_token)).publish(
            folder, "cot-org/x", "model", tag=None, message="m"
        )
    with pytest.raises(HubError, match="no repo 'tester/absent'"):
        HfHub(HfApi(endpoint=fake_hub.url, token=fake_hub.token)).pull("tester/absent", None, None)


def test_the_token_is_written_nowhere(fake_hub, tiny_model_dir, tmp_path, home, caplog):
    caplog.set_level(logging.DEBUG)
    recipe = load_recipe(on_hub(toy_recipe(tmp_path, tiny_model_dir), "tester/secret-check"))
    run_recipe(recipe, home)
    assert fake_hub.token not in caplog.text
    for path in home.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert fake_hub.token.encode() not in path.read_bytes(), path
