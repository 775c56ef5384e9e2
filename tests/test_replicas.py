"""An `openai` teacher with replicas (`base_url` as a list): requests spread over them within
each one's share of `concurrency`, a replica that dies hands its requests to the others, every
replica down stops the build with one line naming them, and answers are shared by recipes that
differ only in their replicas. All through the real `openai` client against servers on loopback
(tests/fake_openai.py), killed the way a crashed server dies."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from test_generate import read_traces, write_recipe

from factory.cache import GenerationCache
from factory.paths import cache_path
from factory.recipe import RecipeError, load_recipe
from factory.replicas import make_replicas
from factory.run import build_dataset
from factory.teachers import TeacherError

slow = pytest.mark.slow  # starts servers


@pytest.fixture
def servers():
    """Starts FakeOpenAI servers on demand; each is stopped at the end."""
    started: list[FakeOpenAI] = []

    def start(**options) -> FakeOpenAI:
        started.append(FakeOpenAI(**options).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


def teacher(*servers: FakeOpenAI | str, **extra) -> dict:
    """An `openai` teacher with these replicas (a lone string: one `base_url` as before)."""
    urls = [s if isinstance(s, str) else s.base_url for s in servers]
    base_url = urls[0] if len(urls) == 1 and isinstance(servers[0], str) else urls
    return {
        "backend": "openai",
        "model": "fake/teacher",
        "base_url": base_url,
        "api_key_env": None,
        "max_retries": 2,
        **extra,
    }


def cached(home: Path) -> list[dict]:
    cache = GenerationCache(cache_path(home))
    try:
        return list(cache.responses().values())
    finally:
        cache.close()


def by_replica(rows: list[dict]) -> Counter:
    return Counter(row.get("replica") for row in rows)


def assert_each_once(traces: list[dict], wanted: int) -> None:
    keys = [(t["config"], t["problem_id"], t["sample"]) for t in traces]
    assert len(keys) == len(set(keys)) == wanted, "every problem x config x sample exactly once"


# --- the recipe -------------------------------------------------------------------------------

URLS = ["http://h:1/v1", "http://h:2/v1"]


def test_a_lone_url_dumps_as_before_and_replica_lists_are_checked(tmp_path):
    one = load_recipe(write_recipe(tmp_path, teacher(URLS[0])))
    assert one.model_dump(mode="json")["teacher"][0]["base_url"] == URLS[0], "same recipe hash"
    two = load_recipe(write_recipe(tmp_path, teacher(*URLS, concurrency=5), name="two"))
    assert two.model_dump(mode="json")["teacher"][0]["base_url"] == URLS
    replicas, (alone,) = make_replicas(two.teacher[0], "key"), make_replicas(one.teacher[0], "k")
    assert [r.share for r in replicas] == [3, 2] and alone.share == 8
    assert [r.client.max_retries for r in replicas] == [0, 0], "the pool moves failures"
    assert alone.client.max_retries == 2, "one URL keeps the client's retries"
    for urls, error in (
        ([URLS[0]] * 2, r"teacher\.base_url\[1\]: 'http://h:1/v1' is listed twice"),
        ([], r"teacher\.base_url: List should have at least 1 item"),
        ([*URLS, "http://h:3/v1"], r"concurrency: 3 replicas need a concurrency of at least 3"),
    ):
        path = write_recipe(tmp_path, {**teacher(*URLS, concurrency=2), "base_url": urls})
        with pytest.raises(RecipeError, match=error):
            load_recipe(path)


# --- spreading, sharing -----------------------------------------------------------------------


@slow
def test_requests_spread_over_replicas_within_their_shares(servers, tmp_path, home):
    a, b = servers(delay=0.05), servers(delay=0.05)
    path = write_recipe(tmp_path, teacher(a, b, concurrency=5), train=24, digits=3)
    result = build_dataset(load_recipe(path), home)
    traces = read_traces(result.run.root)
    assert_each_once(traces, 24)
    assert (a.in_flight_max, b.in_flight_max) == (3, 2), "each replica its share of 5"
    assert a.answered >= 6 and b.answered >= 6 and a.answered + b.answered == 24
    counts = {a.base_url: a.answered, b.base_url: b.answered}
    assert by_replica(traces) == by_replica(cached(home)) == counts, "each trace names its replica"
    assert all(a.base_url not in str(t["teacher_params"]) for t in traces), "not in the key"

    # Other replicas of the same model, or one URL: the same answers, nothing asked again.
    c = servers()
    for name, other in (("moved", teacher(c, b)), ("single", teacher(c.base_url))):
        again = build_dataset(
            load_recipe(write_recipe(tmp_path, other, train=24, digits=3, name=name)), home
        )
        assert [t["raw_output"] for t in read_traces(again.run.root)] == [
            t["raw_output"] for t in traces
        ]
        assert by_replica(read_traces(again.run.root)) == counts
    assert len(c.requests) == 0 and a.answered + b.answered == 24


@slow
def test_a_failing_replica_hands_the_request_on_at_once(servers, tmp_path, home):
    """With replicas a 503 moves to another replica, instead of the client retrying it on the
    failing one (`max_retries: 6`: about 20 s of backoff)."""
    a, b = servers(faults=["503"] * 50), servers()
    path = write_recipe(tmp_path, teacher(a, b, max_retries=6, concurrency=2), train=8, digits=3)
    start = time.monotonic()
    result = build_dataset(load_recipe(path), home)
    assert time.monotonic() - start < 10
    assert_each_once(read_traces(result.run.root), 8)
    assert a.answered == 0 and b.answered == 8
    assert a.requests and all(body in b.requests for body in a.requests), "each failed one moved"
    assert len(a.requests) <= 3, "backed off, not asked again and again"


# --- a replica dies ---------------------------------------------------------------------------


@slow
def test_a_replica_killed_mid_build_loses_and_duplicates_nothing(servers, tmp_path, home):
    a, b = servers(delay=0.1, die_after=5), servers(delay=0.05)  # 3 in flight to each
    path = write_recipe(tmp_path, teacher(a, b, concurrency=6), train=20, levels=(1, 2), digits=3)
    result = build_dataset(load_recipe(path), home)
    assert a.dead and len(a.requests) > a.answered == 5, "it died with requests in flight"
    traces, answers = read_traces(result.run.root), cached(home)
    assert_each_once(traces, 40)
    assert len(answers) == 40 == a.answered + b.answered, "each answered and cached once"
    assert by_replica(answers) == {a.base_url: 5, b.base_url: 35}, "a only before it died"
    assert by_replica(traces) == by_replica(answers)
    assert all("The answer is" in t["raw_output"] for t in traces)


@slow
def test_every_replica_down_stops_with_one_line_and_keeps_what_arrived(servers, tmp_path, home):
    a, b = servers(delay=0.05, die_after=3), servers(delay=0.05, die_after=3)
    recipe = write_recipe(tmp_path, teacher(a, b, concurrency=4, max_retries=1), train=12, digits=3)
    cli = [sys.executable, "-m", "factory.cli", "build", str(recipe), "--home", str(home)]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: teacher fake/teacher: all 2 replicas are down: ")
    for url in (a.base_url, b.base_url):
        assert f"{url} (" in error and "; 2 tries)" in error
    assert error.endswith("the 6 answers that arrived are cached, re-run to resume")
    assert a.answered == b.answered == 3 and len(cached(home)) == 6

    c = servers()  # back up, behind one URL: only the rest is asked
    again = write_recipe(tmp_path, teacher(c.base_url), train=12, digits=3, name="again")
    result = build_dataset(load_recipe(again), home)
    assert len(c.requests) == 12 - 6
    assert_each_once(read_traces(result.run.root), 12)
    assert len(cached(home)) == 12


@slow
def test_unreachable_replicas_are_named_redacted(tmp_path, home, monkeypatch):
    monkeypatch.setenv("REPLICA_KEY", "sk-replica-canary-0123456789")
    urls = ["http://127.0.0.1:9/v1", "http://127.0.0.1:9/sk-replica-canary-0123456789/v1"]
    spec = {**teacher(*urls, max_retries=0), "api_key_env": "REPLICA_KEY"}
    with pytest.raises(
        TeacherError, match=r"^teacher fake/teacher: all 2 replicas are down"
    ) as info:
        build_dataset(load_recipe(write_recipe(tmp_path, spec)), home)
    message = str(info.value)
    assert "sk-replica-canary" not in message and "[redacted $REPLICA_KEY]" in message
    assert "http://127.0.0.1:9/v1 (" in message and "; 1 try)" in message
