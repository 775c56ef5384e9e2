"""A build streams: traces go from the cache through verification into parquet shards without
being held, yet the dataset is the one the list-based build made.

`tests/snapshots/build_scale.json` is what the list-based build (commit 8e37eb8, before the
build streamed) made of the recipes in tests/scale_recipes.py: every config's rows, the
statistics, the card and the traces. The streamed build must match it exactly. Then: a split
of many shards reads as one (`load_config`, `load_dataset`, a student trains on it), memory stays
bounded at 20k problems, and a build killed halfway resumes from the cache without asking again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import scale_recipes as recipes
from fake_openai import FakeOpenAI

from factory.cache import GenerationCache
from factory.paths import cache_path
from factory.recipe import load_recipe
from factory.run import build_dataset

SNAPSHOT = json.loads((Path(__file__).parent / "snapshots" / "build_scale.json").read_text())


def built_snapshot(name: str, tmp_path: Path, home: Path) -> dict:
    """The snapshot of a build of one of the recipes, normalised as the stored one was."""
    server = None
    if name == "reasoning":
        server = FakeOpenAI(thinking="reasoning").start()
    elif name == "sampling":
        server = FakeOpenAI(writes=recipes.uneven_coin).start()
    try:
        make = getattr(recipes, f"{name}_recipe")
        path = make(tmp_path, server) if server else make(tmp_path)
        done = build_dataset(load_recipe(path), home)
    finally:
        if server:
            server.stop()
    replacements = {str(tmp_path): "<tmp>"} | ({server.base_url: "<url>"} if server else {})
    return recipes.snapshot(done, replacements)


@pytest.mark.parametrize(
    "name",
    [
        "program",
        "replay",
        pytest.param("reasoning", marks=pytest.mark.slow),
        pytest.param("sampling", marks=pytest.mark.slow),
    ],
)
def test_the_streamed_build_makes_the_same_dataset_as_the_list_based_one(name, tmp_path, home):
    got, expected = built_snapshot(name, tmp_path, home), SNAPSHOT[name]
    assert got["stats"] == expected["stats"]
    assert got["rows"] == expected["rows"]
    assert got["card"] == expected["card"]
    assert got["traces"] == expected["traces"]


# --- many shards ------------------------------------------------------------------------------


def rebuilt(done, folder: Path, rows_per_shard: int) -> Path:
    """The build's own problems and traces, built again into `folder` in shards this small."""
    from factory.build import build
    from factory.files import read_jsonl
    from factory.sources import LoadedProblems, read_problems

    splits = {s: read_problems(done.run.problems(s)) for s in done.manifest.source}
    skipped = {s: done.manifest.source[s]["skipped"] for s in splits}
    problems = LoadedProblems(splits, skipped)
    build(done.recipe, problems, read_jsonl(done.run.traces), folder, rows_per_shard=rows_per_shard)
    return folder


def test_a_split_of_many_shards_reads_as_one(tmp_path, home):
    """The same traces built into shards of 7 rows: the Hub's shard names, the same rows through
    `load_config` and through `load_dataset` with the card's globs, the same card."""
    from datasets import load_dataset

    from factory.shards import load_config
    from factory.sources import read_problems

    done = build_dataset(load_recipe(recipes.program_recipe(tmp_path)), home)
    sharded = rebuilt(done, tmp_path / "sharded", 7)
    names = sorted(p.name for p in (sharded / "cot-L1").iterdir())
    assert names == [f"train-0000{i}-of-00006.parquet" for i in range(6)], "40 rows, 7 a shard"
    assert len(list((sharded / "mix-all").glob("train-*"))) == 11  # 74 rows
    for config in done.manifest.configs:
        if done.manifest.configs[config]["kept"]:
            one = load_config(done.run.dataset, config).to_list()
            assert load_config(sharded, config).to_list() == one, config
            assert load_dataset(str(sharded), config, split="train").to_list() == one, config
    train = [p.to_dict() for p in read_problems(done.run.problems("train"))]
    assert load_config(sharded, "problems", "train").to_list() == train
    assert (sharded / "README.md").read_text() == (done.run.dataset / "README.md").read_text()


@pytest.mark.slow
def test_a_student_trains_on_a_config_of_many_shards(tmp_path, tiny_model_dir, home):
    import yaml
    from test_train import toy_recipe

    from factory.train import train_student

    path = toy_recipe(tmp_path, tiny_model_dir, sft={"num_train_epochs": 1})
    spec = yaml.safe_load(path.read_text())
    spec["teacher"] = {"backend": "program", "name": "program"}
    spec["cot"] = {"levels": [1], "formats": ["cot"], "answer_only": True}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    recipe = load_recipe(path)
    done = build_dataset(recipe, home)
    sharded = rebuilt(done, tmp_path / "sharded", 5)
    assert len(list((sharded / "cot-L1").glob("train-*-of-00004.parquet"))) == 4  # 16 rows
    result = train_student(recipe, recipe.students[0], "cot-L1", sharded, tmp_path / "run", home)
    assert result.metrics["rows"] == 16 and result.metrics["steps"] == 4
    assert result.metrics["loss_history"][-1]["loss"] > 0


# --- memory -----------------------------------------------------------------------------------


def cli_build(path: Path, home: Path, **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "factory.cli", "build", str(path), "--home", str(home)]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, **popen)


def peak_mb(process: subprocess.Popen) -> tuple[int, float]:
    """Wait for `process`: its exit status and its own peak RSS in MB."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024


@pytest.mark.slow
def test_memory_does_not_grow_with_the_traces(tmp_path):
    """20k problems at one config against the same problems at three configs and a mixture (3.8
    times the rows): the build's peak RSS barely moves (measured: +7 MB, where the list-based
    build grew by 111 MB, 399 to 510 MB), and stays far under 1 GB."""
    one = recipes.gym_recipe(tmp_path, "one", 20_000)
    cot = {"levels": [1, 3], "formats": ["cot"], "answer_only": True}
    mixtures = {"mix": {"cot-L1": 0.5, "cot-L3": 1.0}}
    many = recipes.gym_recipe(tmp_path, "many", 20_000, cot=cot, mixtures=mixtures)
    (status_one, rss_one), (status_many, rss_many) = (
        peak_mb(cli_build(path, tmp_path / path.stem)) for path in (one, many)
    )
    assert status_one == status_many == 0
    manifest = json.loads(next((tmp_path / "many" / "runs").glob("*/manifest.json")).read_text())
    kept = {name: config["kept"] for name, config in manifest["configs"].items()}
    assert kept["cot-L1"] == kept["cot-L3"] == kept["answer-only"] == 20_000
    assert kept["mix"] > 15_000, "half of cot-L1 and all of cot-L3, less repeated questions"
    assert rss_many - rss_one < 40, (rss_one, rss_many)
    assert rss_many < 1024, rss_many


# --- resuming ---------------------------------------------------------------------------------


def cached_requests(home: Path, teacher: str) -> set[str]:
    """The requests a teacher's cached answers were asked with (their messages, as JSON)."""
    with sqlite3.connect(cache_path(home)) as db:
        rows = db.execute("SELECT request FROM completions WHERE teacher = ?", (teacher,))
        return {json.dumps(json.loads(r)["messages"], sort_keys=True) for (r,) in rows}


def prefill(home: Path, megabytes: int) -> None:
    """Completions of another teacher in the home's cache, `megabytes` of them."""
    answer = json.dumps({"text": "x" * 10_000, "finish_reason": "stop", "usage": {}})
    with GenerationCache(cache_path(home)):
        pass
    with sqlite3.connect(cache_path(home)) as db:
        rows = ((f"other-{i}", "other", "{}", answer, 0.0) for i in range(megabytes * 100))
        db.executemany("INSERT INTO completions VALUES (?, ?, ?, ?, ?)", rows)


@pytest.mark.slow
def test_a_build_killed_halfway_resumes_without_asking_again(tmp_path, home):
    """A 3000-problem build through the `openai` client (7 KB answers), SIGKILLed halfway, its
    cache also holding 200 MB of another teacher's: the re-run asks for exactly what was not
    cached, each once, the rows are complete, and the re-run's peak RSS is a 10-problem build's
    and a little (measured: +28 MB; the list-based build's re-run took +322 MB)."""
    from test_generate import fake_teacher, write_recipe

    from factory.shards import load_config

    server, concurrency, n = FakeOpenAI(writes=recipes.long_right_sum).start(), 8, 3000
    teacher = fake_teacher(server, concurrency=concurrency, max_tokens=2000)
    try:
        path = write_recipe(tmp_path, teacher, train=n, digits=2)
        prefill(home, 200)
        killed = cli_build(path, home)
        while len(cached_requests(home, "teacher")) < n // 2 and killed.poll() is None:
            time.sleep(0.05)
        killed.send_signal(signal.SIGKILL)
        assert peak_mb(killed)[0] == -signal.SIGKILL
        cached, sent = cached_requests(home, "teacher"), len(server.requests)
        assert n // 2 <= len(cached) < n and sent - len(cached) <= concurrency, (len(cached), sent)
        status, resumed_mb = peak_mb(cli_build(path, home))
        small = write_recipe(tmp_path, teacher, train=10, digits=2, name="small")
        small_mb = peak_mb(cli_build(small, tmp_path / "small-home"))[1]
    finally:
        server.stop()
    assert status == 0
    asked = [json.dumps(body["messages"], sort_keys=True) for body in server.requests[sent:-10]]
    assert len(asked) == len(set(asked)), "the re-run asks nothing twice"
    assert not set(asked) & cached, "nor anything that was cached"
    done = next(p for p in (home / "runs").iterdir() if p.name.startswith("gen-"))
    rows = load_config(done / "dataset", "cot-L1")
    assert sorted(rows["id"]) == [f"train-{i:05d}" for i in range(1, n + 1)], "every row"
    assert len(cached | set(asked)) == len(set(rows["question"])), "every prompt asked once"
    assert resumed_mb < small_mb + 60, (resumed_mb, small_mb)
