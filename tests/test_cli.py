"""The `cot-factory` command: instant help, clear errors, build -> publish -> pull end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_dataset
from test_build import synthetic_recipe

COMMANDS = [
    "validate",
    "build",
    "publish",
    "run",
    "train",
    "eval",
    "sweep",
    "report",
    "demo",
    "pull",
    "reproduce",
]
HEAVY = [
    "torch",
    "transformers",
    "datasets",
    "trl",
    "peft",
    "openai",
    "huggingface_hub",
    "pydantic",
]


def cot_factory(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    extra = ["--home", str(home)] if home else []
    return subprocess.run(
        [sys.executable, "-m", "factory.cli", *args, *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_imports_nothing_heavy():
    probe = (
        "import sys\nfrom factory.cli import main\n"
        f"for argv in [['--help']] + [[c, '--help'] for c in {COMMANDS!r}]:\n"
        "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    for command in COMMANDS:
        assert f"\n    {command}" in out.stdout or f"  {command} " in out.stdout


def test_validate_shows_configs(tmp_path):
    out = cot_factory("validate", str(synthetic_recipe(tmp_path)))
    assert out.returncode == 0, out.stderr
    assert "valid recipe 'synthetic', tag recipe-" in out.stdout
    assert "cot-L2" in out.stdout and "answer-only" in out.stdout


def test_bad_recipe_is_a_one_line_error_without_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("source: {kind: files, train: x.jsonl}\nteacher: {backend: replay}\n")
    out = cot_factory("build", str(path), home=tmp_path / "home")
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: {path}:2: teacher.name: required key is missing")
    assert "Traceback" not in out.stderr
    assert "dataset: required key is missing" in out.stderr


@pytest.mark.parametrize("command", ["validate", "build"])
def test_missing_source_file_names_it_and_its_key(tmp_path, command):
    path = synthetic_recipe(tmp_path)
    (tmp_path / "problems.jsonl").unlink()
    out = cot_factory(command, str(path), home=tmp_path / "home")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert f"{path}:" in out.stderr and "source.train: cannot read" in out.stderr
    assert "problems.jsonl: No such file" in out.stderr


def test_build_publish_pull(tmp_path):
    home, recipe = tmp_path / "home", synthetic_recipe(tmp_path)
    out = cot_factory("publish", str(recipe), home=home)
    assert out.returncode == 2 and "run `cot-factory build" in out.stderr

    built = cot_factory("build", str(recipe), "--publish", home=home)
    assert built.returncode == 0, built.stderr
    assert "cot-L2" in built.stdout and "(new commit)" in built.stdout
    again = cot_factory("publish", str(recipe), home=home)
    assert "unchanged, no new commit" in again.stdout

    tag = next(word for word in built.stdout.split() if word.startswith("recipe-"))
    pulled = cot_factory(
        "pull",
        "local/synthetic",
        "--revision",
        tag,
        "--to",
        str(tmp_path / "pulled-locally"),
        home=home,
    )
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.splitlines()[0].startswith("dataset local/synthetic @ ")
    rows = load_dataset(str(tmp_path / "pulled-locally"), "answer-only", split="train")
    assert len(rows) == 4
    manifest = json.loads(next((home / "runs").glob("synthetic-*/manifest.json")).read_text())
    assert manifest["dataset"]["commit"] in pulled.stdout

    missing = cot_factory("pull", "local/absent", home=home)
    assert missing.returncode == 2 and "no repo 'local/absent'" in missing.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_home(command):
    out = cot_factory(command, "--help")
    assert "--home" in out.stdout
