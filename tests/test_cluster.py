"""Sweeps on a real local Ray cluster with the tiny model: runs in parallel as Ray tasks give the
report a sequential sweep gives, a killed worker's run is started again and resumes, a node that
cannot see the home is a one-line error."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_train import toy_recipe

from factory.recipe import load_recipe
from factory.run import sweep

pytest.importorskip(
    "ray", reason="the Ray tests need the `ray` extra: pip install 'cot-factory[ray]'"
)
pytestmark = pytest.mark.slow  # starts Ray clusters and trains models
RAY = Path(sys.executable).with_name("ray")


def four_runs(tmp_path: Path, tiny_model_dir: Path, name: str = "rayed") -> Path:
    """Two configs (answer-only, reference) x two seeds of the tiny student."""
    path = toy_recipe(tmp_path, tiny_model_dir, name=name, sft={"num_train_epochs": 2})
    recipe = yaml.safe_load(path.read_text())
    recipe["source"]["columns"] = {"rationale": "metadata.expression"}
    recipe["cot"]["reference"] = True
    recipe["train"]["seeds"] = [0, 1]
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def outcomes(report: Path) -> dict:
    """What a report concludes, without timings: each run's answers, and every comparison."""
    results = json.loads((report / "results.json").read_text())
    runs = {(r["config"], tuple(r["seeds"])): (r["correct"], r["total"]) for r in results["runs"]}
    return {"runs": runs, "comparisons": results["comparisons"]}


def test_runs_as_ray_tasks_give_the_sequential_report(tmp_path, tiny_model_dir):
    recipe = load_recipe(four_runs(tmp_path, tiny_model_dir))
    in_order = sweep(recipe, tmp_path / "home-a")
    on_ray = sweep(recipe, tmp_path / "home-b", ray="local")
    assert outcomes(on_ray) == outcomes(in_order)
    trained = list(
        (tmp_path / "home-b" / "runs").glob("*/students/tiny/*/seed-*/training_metrics.json")
    )
    assert len(trained) == 4
    stamps = {p: p.stat().st_mtime_ns for p in trained}
    again = sweep(recipe, tmp_path / "home-b", ray="local")  # nothing is owed: nothing runs
    assert {p: p.stat().st_mtime_ns for p in trained} == stamps
    assert outcomes(again) == outcomes(on_ray)


def _task_pids() -> list[int]:
    """Ray worker processes running a sweep run (Ray names a busy worker after its task)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(b"ray::sweep_run"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_a_killed_worker_s_run_starts_again_and_nothing_is_lost_or_doubled(
    tmp_path, tiny_model_dir
):
    path = four_runs(tmp_path, tiny_model_dir, name="killed")
    home = tmp_path / "home"
    command = [
        sys.executable,
        "-m",
        "factory.cli",
        "sweep",
        str(path),
        "--ray",
        "--home",
        str(home),
    ]
    sweep_process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline, killed = time.monotonic() + 240, None
    while killed is None and time.monotonic() < deadline and sweep_process.poll() is None:
        pids = _task_pids()
        if pids and list(home.glob("runs/*/students/tiny/*/seed-*/checkpoints")):
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    out, err = sweep_process.communicate(timeout=600)
    assert killed is not None, "no sweep run was caught mid-training"
    assert sweep_process.returncode == 0, err[-3000:]
    assert "its worker died" in err and "starting it again, it resumes" in err
    run = next((home / "runs").glob("killed-*"))
    finished = sorted(
        p.parent.relative_to(run).as_posix()
        for p in run.glob("students/tiny/*/seed-*/training_metrics.json")
    )
    assert finished == [
        f"students/tiny/{c}/seed-{s}" for c in ("answer-only", "reference") for s in (0, 1)
    ]
    results = json.loads((run / "report" / "results.json").read_text())
    assert sorted(r["config"] for r in results["runs"]) == ["answer-only", "reference"]
    assert all(r["seeds"] == [0, 1] and r["total"] == 16 for r in results["runs"])


def _unshare_works() -> bool:
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    shutil.which("unshare") is None or not _unshare_works(),
    reason="needs unshare -m (a mount namespace) to give a Ray node its own view of the disk",
)
def test_a_node_that_cannot_see_the_home_is_a_one_line_error(tmp_path, tiny_model_dir):
    """A second Ray node started in its own mount namespace, where an empty tmpfs hides the
    home: the sweep stops before training, naming the node and the home."""
    from tiny import free_port

    path = four_runs(tmp_path, tiny_model_dir, name="hidden")
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    head = [
        str(RAY),
        "start",
        "--head",
        f"--port={port}",
        "--num-cpus=1",
        "--include-dashboard=false",
    ]
    started = subprocess.run(head, check=True, capture_output=True, text=True, env=env, timeout=120)
    address = re.search(r"ray start --address='([^']+)'", started.stdout + started.stderr).group(1)
    join = f"{RAY} start --address={address} --num-cpus=1 --block"
    hidden = f"mount -t tmpfs tmpfs {home} && exec {join}"
    node = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", hidden],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = subprocess.run(
                [str(RAY), "status", f"--address={address}"],
                capture_output=True,
                text=True,
                env=env,
            )
            if status.stdout.count("node_") >= 2:
                break
            time.sleep(1)
        command = [
            sys.executable,
            "-m",
            "factory.cli",
            "sweep",
            str(path),
            "--ray",
            "auto",
            "--home",
            str(home),
        ]
        out = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    finally:
        node.terminate()
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True, env=env, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    error = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "cannot see the home directory" in error[0] and str(home) in error[0]
    assert not list(home.glob("runs/*/students/*/*/seed-*/training_metrics.json")), (
        "nothing trained"
    )
