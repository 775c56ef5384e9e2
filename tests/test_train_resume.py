"""Interrupted training with the real TRL, PEFT and transformers on the tiny model: a process
killed at any file operation after training, or mid-training after a checkpoint, leaves a run
that the next `train_student` call finishes with the metrics of an uninterrupted run.

A training process (a fork of one subprocess that imported the libraries once) exits abruptly
(`os._exit`, as a kill would: no cleanup, nothing flushed) at the Nth file write under the run
folder, counted from the first one under a given path. Writes are
seen through Python's audit hooks: `open` for writing, rename, remove, mkdir (of a new folder),
rmtree. Files that Rust or C++ write (safetensors, tokenizer.json, training_args.bin) raise no
event; a kill while one is written leaves the same unfinished run as a kill at the write after.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train import toy_recipe

from factory.recipe import load_recipe
from factory.train import train_student

pytestmark = pytest.mark.slow  # starts servers or trains models

# 16 rows, batch 4: 4 steps an epoch, 12 in all; checkpoints at steps 4, 8 and 12.
SFT = {"num_train_epochs": 3, "save_steps": 4, "save_total_limit": 2}
KILLED = 17
LEFT = ("adapter", "training_metrics.json", "checkpoints")
KILLER = r"""
import json, os, sys
from pathlib import Path

recipe, dataset, home, runs, arm, first, last = sys.argv[1:8]
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
EVENTS = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree"}


def hook(out: Path, nth: int):
    seen = []

    def audit(event, args):
        if event == "open":
            if not (set(args[1] or "") & set("wax+") or args[2] & WRITE):
                return
        elif event not in EVENTS:
            return
        path = os.fsdecode(args[0]) if isinstance(args[0], (str, bytes, os.PathLike)) else ""
        if not path.startswith(str(out)) or event == "os.mkdir" and os.path.isdir(path):
            return
        rel = os.path.relpath(path, out)
        if seen or rel == arm or rel.startswith(arm + "/"):
            seen.append(rel)
            if len(seen) == nth:
                os._exit(17)

    return audit


import peft, torch, transformers, trl  # once, before the forks
from factory.recipe import load_recipe
from factory.train import train_student

recipe = load_recipe(recipe)
codes = {}
for nth in range(int(first), int(last) + 1):
    out = Path(runs.format(nth))
    pid = os.fork()
    if pid == 0:
        sys.addaudithook(hook(out, nth))
        train_student(recipe, recipe.students[0], "answer-only", Path(dataset), out, Path(home))
        os._exit(0)
    codes[nth] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if codes[nth] != 17:
        break
print(json.dumps(codes))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir):
    """The toy recipe, its dataset built by `cot-factory build`, and the home."""
    root = tmp_path_factory.mktemp("resume")
    path, home = toy_recipe(root, tiny_model_dir, sft=SFT), root / "home"
    command = [sys.executable, "-m", "factory.cli", "build", str(path), "--home", str(home)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    (run,) = (home / "runs").iterdir()
    return load_recipe(path), run / "dataset", home


@pytest.fixture(scope="module")
def straight(built, tmp_path_factory):
    """The same run, uninterrupted."""
    return train(built, tmp_path_factory.mktemp("straight") / "run")


def train(built, out: Path):
    recipe, dataset, home = built
    return train_student(recipe, recipe.students[0], "answer-only", dataset, out, home)


def killed(built, runs: str, arm: str, first: int, last: int | None = None) -> dict[int, int]:
    """Train in forks of one subprocess, run `n` in `runs.format(n)` exiting at its `n`th file
    write from the first under `arm`, for n from `first` to `last` or the first not killed.
    Returns each run's exit code."""
    recipe, dataset, home = built
    args = [str(recipe.path), str(dataset), str(home), runs, arm, str(first), str(last or first)]
    done = subprocess.run(
        [sys.executable, "-c", KILLER, *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {int(n): code for n, code in json.loads(done.stdout.splitlines()[-1]).items()}


def assert_same_run(result, reference) -> None:
    """`result` is `reference` trained again: same steps, tokens, loss, adapter and settings;
    its seconds are its segments' and its speed follows from them."""
    metrics, expected = result.metrics, reference.metrics
    for key in ("config", "rows", "steps", "epochs", "train_tokens"):
        assert metrics[key] == expected[key], key
    assert metrics["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-5)
    assert [h["step"] for h in metrics["loss_history"]] == list(range(1, 13))
    losses = [h["loss"] for h in metrics["loss_history"]]
    assert losses == pytest.approx([h["loss"] for h in expected["loss_history"]], rel=1e-4)
    seconds = sum(s["seconds"] for s in metrics["segments"])
    assert metrics["seconds"] == round(seconds, 1) and seconds > 0
    assert metrics["tokens_per_second"] == round(metrics["train_tokens"] / seconds, 1)
    a = load_file(result.adapter_dir / "adapter_model.safetensors")
    b = load_file(reference.adapter_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert _files(result.adapter_dir) == _files(reference.adapter_dir)
    out, reference_out = result.adapter_dir.parent, reference.adapter_dir.parent
    assert json.loads(json.dumps(result.settings).replace(str(out), "OUT")) == json.loads(
        json.dumps(reference.settings).replace(str(reference_out), "OUT")
    )
    assert json.loads((out / "training_metrics.json").read_text()) == metrics
    assert not (out / "checkpoints").exists(), "checkpoints are removed once the run is done"


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_a_kill_at_any_file_operation_after_training_is_finished_by_the_next_call(
    built, straight, tmp_path
):
    codes = killed(built, str(tmp_path / "kill-{}"), "adapter", 1, 50)
    *kills, last = codes
    assert [codes[n] for n in kills] == [KILLED] * len(kills) and codes[last] == 0
    assert len(kills) > 8, f"only {len(kills)} file operations were seen"
    left = []  # what each kill left: LEFT, there or not
    for nth in kills:
        out = tmp_path / f"kill-{nth}"
        left.append(tuple((out / name).exists() for name in LEFT))
        result = train(built, out)
        assert_same_run(result, straight)
        if not left[-1][1]:  # resumed from the final checkpoint
            assert result.metrics["segments"][-1]["start_step"] == 12, "no step is run again"
    assert_same_run(train(built, tmp_path / f"kill-{last}"), straight)
    assert left[0] == (False, False, True), "killed before the adapter was saved"
    assert (True, False, True) in left, "killed with the adapter saved, not the metrics"
    assert left[-2:] == [(True, True, True)] * 2, "killed while removing the checkpoints"


def test_resumed_training_reports_the_whole_run(built, straight, tmp_path):
    out = tmp_path / "run"
    arm = "checkpoints/checkpoint-4/trainer_state.json"
    assert killed(built, str(out), arm, 2) == {2: KILLED}, "killed after checkpoint-4 was saved"
    assert not (out / "training_metrics.json").exists()
    state = json.loads((out / "checkpoints/checkpoint-4/trainer_state.json").read_text())
    (first,) = state["stateful_callbacks"]["Segments"]["attributes"]["segments"]
    assert first["start_step"] == 0 and first["seconds"] > 0
    cut_short = out / "checkpoints" / "checkpoint-999"  # as if killed while saving its state
    cut_short.mkdir()
    (cut_short / "trainer_state.json").write_text('{"global_step": 9')

    resumed = train(built, out)
    assert not cut_short.exists()
    metrics = resumed.metrics
    assert metrics["resumed_from"] == "checkpoint-4" and metrics["resumes"] == 1
    assert metrics["segments"][0] == first and metrics["segments"][1]["start_step"] == 4
    assert metrics["segments"][1]["seconds"] > 0
    assert_same_run(resumed, straight)


def test_a_torn_metrics_file_is_rebuilt_from_the_final_checkpoint(built, straight, tmp_path):
    out = tmp_path / "run"
    assert killed(built, str(out), "training_metrics.json.tmp", 3) == {3: KILLED}, "no cleanup"
    metrics = out / "training_metrics.json"
    metrics.write_text(metrics.read_text()[:100])  # torn, as a non-atomic write left it
    rebuilt = train(built, out)
    assert rebuilt.metrics["resumed_from"] == "checkpoint-12"
    assert rebuilt.metrics["segments"][-1]["start_step"] == 12, "no step is trained again"
    assert_same_run(rebuilt, straight)


def test_a_torn_metrics_file_without_checkpoints_is_trained_again(built, straight, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(straight.adapter_dir.parent, out)
    metrics = out / "training_metrics.json"
    metrics.write_text(metrics.read_text()[:100])
    again = train(built, out)
    assert again.metrics["resumes"] == 0 and again.metrics["resumed_from"] is None
    assert_same_run(again, straight)
