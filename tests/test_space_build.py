"""`cot-factory space build`: a self-contained Space folder with valid Space YAML, installable
requirements, for both targets, published like every other artifact; and `cot-factory demo`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from huggingface_hub import SpaceCard
from packaging.version import Version
from test_train import toy_recipe

from factory.manifest import Manifest
from factory.recipe import RecipeError, load_recipe
from factory.run import build_dataset, publish_dataset, publish_space, run_recipe, space_folder
from factory.space import requirements

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def published(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("space-build")
    recipe = load_recipe(toy_recipe(tmp, tiny_model_dir, name="spacey"))
    home = tmp / "home"
    done, (entry,) = run_recipe(recipe, home)
    return recipe, home, done, entry


def test_local_space_folder_is_self_contained(published):
    recipe, home, done, entry = published
    folder = space_folder(recipe, home, "local")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "answers.py",
        "app.py",
        "questions.py",
        "requirements.txt",
        "space_config.json",
    ]
    assert (folder / "app.py").read_bytes() == (ROOT / "spaces" / "app.py").read_bytes()
    for module in ("answers.py", "questions.py"):
        assert (folder / module).read_bytes() == (ROOT / "factory" / module).read_bytes()
    assert "import factory" not in (folder / "app.py").read_text()
    requirements_txt = (folder / "requirements.txt").read_text().splitlines()
    assert f"peft=={metadata.version('peft')}" in requirements_txt
    assert not any(line.startswith("gradio") for line in requirements_txt), "pinned by sdk_version"

    config = json.loads((folder / "space_config.json").read_text())
    (adapter,) = config["adapters"]
    assert adapter["label"] == "answer-only" and adapter["repo"] == entry.release
    assert (Path(adapter["repo"]) / "adapter_config.json").is_file()
    assert config["base_model"] == recipe.students[0].model
    assert Path(config["dataset"]["repo"]).is_dir() and config["dataset"]["split"] == "test"
    (row,) = config["leaderboard"]
    assert row["accuracy"] == entry.accuracy and row["n"] == 8
    assert row["base_accuracy"] == entry.base_accuracy
    assert config["max_new_tokens"] == recipe.eval.max_new_tokens


def test_requirements_are_public_releases_pinned_exactly():
    """A local build's label (`torch==2.13.0+cpu`) is served by no public index: the Space
    would not build on the Hub."""
    pins = dict(line.split("==") for line in requirements())
    assert set(pins) == {"torch", "transformers", "peft", "datasets", "math-verify", "pandas"}
    for name, version in pins.items():
        assert Version(version).local is None and "+" not in version, (name, version)
        assert Version(version).public == Version(metadata.version(name)).public


def test_space_readme_has_valid_space_yaml(published):
    recipe, home, *_ = published
    card = SpaceCard.load(space_folder(recipe, home, "local") / "README.md")
    data = card.data
    assert data.sdk == "gradio" and data.sdk_version == metadata.version("gradio")
    assert data.app_file == "app.py" and data.datasets == ["local/toy"]
    assert data.models == ["local/tiny-spacey-answer-only"]
    assert data.suggested_hardware == "cpu-basic" and data.pinned is False
    assert 0 < len(data.short_description) <= 60 and len(data.title) <= 60
    assert "| tiny | `answer-only` |" in card.text


@pytest.fixture(scope="module")
def on_the_hub(published, fake_hub):
    recipe, home, *_ = published
    path = recipe.path
    text = yaml.safe_load(path.read_text())
    text["dataset"]["repo_id"] = "tester/spacey"
    text["target"] = "hf"
    path.write_text(yaml.safe_dump(text, sort_keys=False))
    hub_recipe = load_recipe(path)
    done, _ = run_recipe(hub_recipe, home)
    return hub_recipe, home, done


def test_hf_space_config_names_repos_and_revisions(on_the_hub, fake_hub):
    hub_recipe, home, done = on_the_hub
    folder = space_folder(hub_recipe, home, "hf")
    config = json.loads((folder / "space_config.json").read_text())
    (adapter,) = config["adapters"]
    assert adapter["repo"] == "tester/tiny-spacey-answer-only"
    assert adapter["revision"] == fake_hub.head("tester/tiny-spacey-answer-only", "model")
    assert config["dataset"]["repo"] == "tester/spacey"
    assert config["dataset"]["revision"] == fake_hub.head("tester/spacey", "dataset")
    assert hub_recipe.space_repo() == "tester/spacey-demo"
    assert (
        done.manifest.space.repo_id == "tester/spacey-demo" and done.manifest.space.target == "hf"
    )
    card = SpaceCard.load("tester/spacey-demo", repo_type="space")
    assert card.data.sdk == "gradio" and card.data.models == ["tester/tiny-spacey-answer-only"]
    assert publish_space(hub_recipe, home).created is False, "unchanged: no new commit"


def test_local_demo_after_an_hf_publish_uses_this_machine_s_folders(on_the_hub):
    """`run --target hf` then `demo RECIPE` (local): the adapters are the released folders in
    the run, not Hub ids with no local path."""
    hub_recipe, home, done = on_the_hub
    config = json.loads((space_folder(hub_recipe, home, "local") / "space_config.json").read_text())
    (adapter,) = config["adapters"]
    assert adapter["repo"] and Path(adapter["repo"]).is_dir() and adapter["revision"] is None
    assert Path(adapter["repo"], "adapter_config.json").is_file()
    (entry,) = Manifest.load(done.run.manifest).students
    assert entry.published.target == "hf" and adapter["repo"] == entry.release


def test_the_local_demo_after_an_hf_publish_starts_and_answers(on_the_hub):
    """The app itself, started from that folder as `cot-factory demo` does: it loads the base
    and the adapter and answers through its API (it used to crash on the adapter's `repo: null`)."""
    from gradio_client import Client
    from test_space_app import start_space

    hub_recipe, home, _ = on_the_hub
    running = start_space(space_folder(hub_recipe, home, "local"))
    try:
        client = Client(running.url, verbose=False, analytics_enabled=False, download_files=False)
        final = client.submit("What is 2 + 3?", None, 4, api_name="/answer").result(timeout=120)
        records = final[-1]
        assert [r["student"] for r in records] == ["tiny (base)", "answer-only"]
        board = client.predict(api_name="/leaderboard")
        assert [row["config"] for row in board] == ["answer-only"]
    finally:
        running.stop()


def test_a_space_without_published_students_says_how_to_publish_them(tmp_path, tiny_model_dir):
    recipe = load_recipe(toy_recipe(tmp_path, tiny_model_dir, name="unpublished"))
    home = tmp_path / "home"
    build_dataset(recipe, home)
    publish_dataset(recipe, home)
    with pytest.raises(RecipeError, match=r"no published student 'tiny' for the Space: "):
        space_folder(recipe, home, "local")


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_demo_stops_its_app_when_told_to_stop(tmp_path, sig):
    """SIGTERM or SIGINT to `cot-factory demo` stops the app it started: no orphan on the port."""
    from tiny import free_port

    folder = tmp_path / "space"
    folder.mkdir()
    (folder / "app.py").write_text(  # a stand-in app that holds the port until it is stopped
        "import os, http.server\n"
        "port = int(os.environ['GRADIO_SERVER_PORT'])\n"
        "http.server.HTTPServer(('127.0.0.1', port), http.server.SimpleHTTPRequestHandler)"
        ".serve_forever()\n"
    )
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "factory.cli", "demo", str(folder), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not (children := _children(demo.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    (app,) = children
    time.sleep(0.5)
    demo.send_signal(sig)
    assert demo.wait(timeout=30) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(app, 0)  # the app is gone (and reaped) ...
    with socket.socket() as free:
        free.bind(("127.0.0.1", port))  # ... and so is its hold on the port
