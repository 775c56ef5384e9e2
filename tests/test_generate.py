"""Teachers, the generation cache and resuming: against a real `transformers serve`, a tiny
in-process model, and a scriptable OpenAI-compatible server for delays and faults."""

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
import yaml
from fake_openai import FakeOpenAI

from factory.cache import GenerationCache, request_key
from factory.generate import GenerateError
from factory.paths import cache_path
from factory.recipe import TransformersTeacher, load_recipe
from factory.run import build_dataset
from factory.teachers import Request, TeacherError, TransformersTeacherModel

pytestmark = pytest.mark.slow  # starts servers or trains models


def write_recipe(
    tmp_path: Path,
    teacher: dict,
    *,
    train: int = 4,
    name: str = "gen",
    levels=(1,),
    samples: int = 1,
    digits: int = 1,
) -> Path:
    """A recipe of `train` chain_sum problems of two `digits`-digit terms asked of `teacher`."""
    options = {"min_terms": 2, "max_terms": 2, "min_digits": digits, "max_digits": digits}
    recipe = {
        "source": {
            "kind": "gym",
            "dataset": "chain_sum",
            "train": train,
            "seed": 0,
            "options": options,
        },
        "teacher": teacher,
        "cot": {
            "levels": list(levels),
            "formats": ["cot"],
            "samples": samples,
            "answer_only": False,
        },
        "dataset": {"repo_id": "local/gen-test"},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def read_traces(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "traces.jsonl").read_text().splitlines()]


@pytest.fixture
def fake():
    server = FakeOpenAI().start()
    yield server
    server.stop()


def fake_teacher(server: FakeOpenAI, **extra) -> dict:
    return {
        "backend": "openai",
        "model": "fake/teacher",
        "base_url": server.base_url,
        "api_key_env": None,
        "max_retries": 3,
        **extra,
    }


# --- the real OpenAI-compatible server --------------------------------------------------------


def test_openai_teacher_against_transformers_serve(openai_server, tmp_path, home):
    teacher = {
        "backend": "openai",
        "model": openai_server.model,
        "base_url": openai_server.base_url,
        "api_key_env": None,
        "max_tokens": 12,
        "concurrency": 2,
    }
    result = build_dataset(load_recipe(write_recipe(tmp_path, teacher, levels=(1, 2))), home)
    traces = read_traces(result.run.root)
    assert len(traces) == 4 * 2
    assert all(t["raw_output"] and t["finish_reason"] in ("stop", "length") for t in traces)
    assert {t["teacher_params"]["model"] for t in traces} == {openai_server.model}
    assert traces[0]["messages"][0]["role"] == "system"
    assert len(GenerationCache(cache_path(home))) == 8

    # Same teacher behind a dead endpoint: everything comes from the cache, nothing is sent.
    dead = {**teacher, "base_url": "http://127.0.0.1:9/v1", "max_retries": 0}
    again = build_dataset(load_recipe(write_recipe(tmp_path, dead, levels=(1, 2), name="b")), home)
    assert [t["raw_output"] for t in read_traces(again.run.root)] == [
        t["raw_output"] for t in traces
    ]


# --- the in-process transformers teacher ------------------------------------------------------


def test_transformers_teacher_batches_like_single_prompts(tiny_model_dir, home):
    questions = [
        "What is 2 + 3?",
        "Tom has 12 apples and eats 5 of them. How many are left?",
        "7 - 1 =",
        "A box holds 4 rows of 6 eggs. How many eggs are in the box?",
    ]
    requests = [
        Request(f"k{i}", "cot-L1", "cot-L1", f"p{i}", q, 0, [{"role": "user", "content": q}])
        for i, q in enumerate(questions)
    ]

    def run(batch_size: int) -> dict[str, dict]:
        spec = TransformersTeacher(
            backend="transformers", model=str(tiny_model_dir), batch_size=batch_size, max_tokens=10
        )
        got: dict[str, dict] = {}
        TransformersTeacherModel(spec, home).complete(
            requests, lambda r, resp: got.update({r.key: resp})
        )
        return got

    batched, single = run(4), run(1)
    assert set(batched) == {r.key for r in requests}
    assert {k: v["text"] for k, v in batched.items()} == {k: v["text"] for k, v in single.items()}
    for response in batched.values():
        assert response["finish_reason"] in ("stop", "length")
        assert 0 < response["usage"]["completion_tokens"] <= 10


# --- the cache --------------------------------------------------------------------------------


def test_cache_key_depends_on_teacher_messages_and_sample(tmp_path):
    teacher, messages = {"model": "a", "temperature": 0.0}, [{"role": "user", "content": "q"}]
    key = request_key(teacher, messages, 0)
    assert key == request_key(dict(reversed(teacher.items())), messages, 0)
    assert key != request_key({**teacher, "temperature": 0.7}, messages, 0)
    assert key != request_key(teacher, [{"role": "user", "content": "q2"}], 0)
    assert key != request_key(teacher, messages, 1)
    cache = GenerationCache(tmp_path / "c.sqlite")
    cache.put(key, "t", {"messages": messages}, {"text": "x", "finish_reason": "stop"})
    assert cache.get_many([key, "absent"]) == {key: {"text": "x", "finish_reason": "stop"}}


def test_second_run_sends_no_request(fake, tmp_path, home):
    recipe = load_recipe(write_recipe(tmp_path, fake_teacher(fake), train=6, samples=2))
    first = build_dataset(recipe, home)
    assert len(fake.requests) == 6 * 2
    assert {r["seed"] for r in fake.requests} == {0, 1}, "each sample has its own seed"
    second = build_dataset(recipe, home)
    assert len(fake.requests) == 12
    assert read_traces(second.run.root) == read_traces(first.run.root)


def test_concurrency_is_bounded(tmp_path, home):
    server = FakeOpenAI(delay=0.15).start()
    try:
        teacher = fake_teacher(server, concurrency=3)
        build_dataset(load_recipe(write_recipe(tmp_path, teacher, train=12)), home)
    finally:
        server.stop()
    assert len(server.requests) == 12
    assert server.in_flight_max == 3


# --- faults and retries -----------------------------------------------------------------------


def test_rate_limits_errors_and_dropped_connections_are_retried(fake, tmp_path, home):
    fake.faults[:] = ["429", "500", "drop"]
    result = build_dataset(load_recipe(write_recipe(tmp_path, fake_teacher(fake))), home)
    assert len(fake.requests) == 4 + 3
    traces = read_traces(result.run.root)
    assert len(traces) == 4, "every problem answered once the faults passed"
    assert all(t["raw_output"].endswith(f"The answer is {t['predicted_answer']}.") for t in traces)
    assert len({t["problem_id"] for t in traces}) == 4


def test_exhausted_retries_fail_clearly_and_keep_what_arrived(fake, tmp_path, home):
    fake.faults[:] = ["500"]
    path = write_recipe(tmp_path, fake_teacher(fake, max_retries=0, concurrency=1), train=5)
    with pytest.raises(GenerateError) as info:
        build_dataset(load_recipe(path), home)
    message = str(info.value)
    assert "1 of 5 requests failed after retries" in message and "re-run to resume" in message
    assert "InternalServerError" in message and info.value.counts == {"HTTP 500": 1}
    assert len(GenerationCache(cache_path(home))) == 4
    build_dataset(load_recipe(path), home)
    assert len(fake.requests) == 5 + 1, "the re-run asks only for the missing answer"


def test_refused_key_and_missing_key_stop_the_run(fake, tmp_path, home, monkeypatch):
    fake.faults[:] = ["401"]
    path = write_recipe(tmp_path, fake_teacher(fake, concurrency=1))
    with pytest.raises(TeacherError, match="refused the API key"):
        build_dataset(load_recipe(path), home)
    monkeypatch.delenv("MY_TEACHER_KEY", raising=False)
    keyed = write_recipe(tmp_path, fake_teacher(fake, api_key_env="MY_TEACHER_KEY"), name="k")
    with pytest.raises(TeacherError, match="environment variable MY_TEACHER_KEY is not set"):
        build_dataset(load_recipe(keyed), home)


# --- SIGKILL mid-run and resume ---------------------------------------------------------------


def cached_rows(home: Path) -> int:
    path = cache_path(home)
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def test_sigkill_mid_run_resumes_without_loss_or_duplicates(tmp_path, home):
    server = FakeOpenAI(delay=0.05).start()
    concurrency, n_problems = 4, 30
    try:
        path = write_recipe(
            tmp_path, fake_teacher(server, concurrency=concurrency), train=n_problems, levels=(1, 2)
        )
        cli = [sys.executable, "-m", "factory.cli", "build", str(path), "--home", str(home)]
        process = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while cached_rows(home) < 15 and time.time() < deadline and process.poll() is None:
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL
        before = cached_rows(home)
        sent_before = len(server.requests)
        assert 15 <= before < 2 * n_problems, "killed mid-run"
        assert sent_before - before <= concurrency, "at most the requests in flight are lost"

        result = build_dataset(load_recipe(path), home)
    finally:
        server.stop()
    traces = read_traces(result.run.root)
    keys = [(t["config"], t["problem_id"], t["sample"]) for t in traces]
    assert len(keys) == len(set(keys)) == 2 * n_problems
    unique_prompts = {(t["config"], t["question"]) for t in traces}
    assert len(server.requests) - sent_before == len(unique_prompts) - before
    assert all(t["raw_output"].endswith(".") and "The answer is" in t["raw_output"] for t in traces)
    assert cached_rows(home) == len(unique_prompts)
