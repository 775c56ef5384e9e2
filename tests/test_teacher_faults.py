"""Teacher answers that are not answers: each bad 200 body or content is retried with backoff
and never cached; when retries run out the run fails counting each class of failure, and a
re-run asks again. All through the real `openai` client against tests/fake_openai.py."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from test_generate import fake_teacher, read_traces, write_recipe

from factory.cache import GenerationCache
from factory.generate import GenerateError
from factory.paths import cache_path
from factory.recipe import load_recipe
from factory.run import build_dataset
from factory.teachers import TeacherError

pytestmark = pytest.mark.slow  # starts servers or trains models

BAD_ANSWERS = {  # fault (tests/fake_openai.py) -> the class it is counted as
    "html": "HTML page",
    "sse": "SSE stream",
    "badjson": "invalid JSON",
    "empty": "empty completion",
    "whitespace": "empty completion",
    "null": "null completion",
    "huge": "over max_tokens",
    "overusage": "over max_tokens",
}
GOOD = re.compile(r"Step 1: read the problem\.\nStep 2: compute\.\nThe answer is \d+\.")


@pytest.fixture
def fake():
    server = FakeOpenAI().start()
    yield server
    server.stop()


def cached_texts(home: Path) -> list[str]:
    """The text of every answer in the home's SQLite cache."""
    cache = GenerationCache(cache_path(home))
    try:
        return [response["text"] for response in cache.responses().values()]
    finally:
        cache.close()


def all_good(texts: list[str]) -> bool:
    return all(GOOD.fullmatch(text) for text in texts)


@pytest.mark.parametrize("fault", BAD_ANSWERS)
def test_a_bad_answer_is_retried_until_the_server_recovers(fault, fake, tmp_path, home, caplog):
    fake.faults[:] = [fault]
    path = write_recipe(tmp_path, fake_teacher(fake, concurrency=1), train=2)
    result = build_dataset(load_recipe(path), home)
    assert len(fake.requests) == 2 + 1
    assert fake.requests[0] == fake.requests[1], "the same request is sent again"
    traces = read_traces(result.run.root)
    assert len(traces) == 2 and all_good([t["raw_output"] for t in traces])
    texts = cached_texts(home)
    assert len(texts) == 2 and all_good(texts), "nothing bad is cached"
    assert f"bad answers, none cached: 1 {BAD_ANSWERS[fault]}" in caplog.text


def test_persistent_bad_answers_fail_the_run_with_counts_per_class(fake, tmp_path, home, caplog):
    per_request = ["badjson"] * 3 + ["empty", "whitespace", "null", "html", "sse"]
    per_request += ["huge", "overusage", "503"]
    fake.faults[:] = [fault for fault in per_request for _ in range(2)]  # each try, retry too
    teacher = fake_teacher(fake, concurrency=1, max_retries=1)
    path = write_recipe(tmp_path, teacher, train=len(per_request) + 1, digits=3)
    with pytest.raises(GenerateError) as info:
        build_dataset(load_recipe(path), home)
    counts = {
        "invalid JSON": 3,
        "empty completion": 2,
        "over max_tokens": 2,
        "null completion": 1,
        "HTML page": 1,
        "SSE stream": 1,
        "HTTP 503": 1,
    }
    assert info.value.counts == counts
    message = str(info.value)
    assert (
        "11 of 12 requests failed after retries: 3 invalid JSON, 2 empty completions, " in message
    )
    summary = "1 null completion, 1 HTML page, 1 SSE stream, 1 HTTP 503"
    assert summary in message and summary in caplog.text and "2 over max_tokens" in message
    assert "The 1 that succeeded are cached; re-run to resume." in message
    assert len(fake.requests) == 2 * 11 + 1
    texts = cached_texts(home)
    assert len(texts) == 1 and all_good(texts), "nothing bad is cached"

    result = build_dataset(load_recipe(path), home)  # the server has recovered
    assert len(fake.requests) == 2 * 11 + 1 + 11, "the re-run asks again for every failed one"
    assert len(read_traces(result.run.root)) == 12
    texts = cached_texts(home)
    assert len(texts) == 12 and all_good(texts)


def test_bad_answers_cached_by_older_versions_are_asked_again(fake, tmp_path, home, caplog):
    caplog.set_level(logging.INFO)
    path = write_recipe(tmp_path, fake_teacher(fake), train=3, digits=3)
    build_dataset(load_recipe(path), home)
    cache = GenerationCache(cache_path(home))
    first, second, _ = sorted(cache.responses())
    for key, text in ((first, " \n"), (second, "x" * 100_000)):
        cache.put(key, "gen", {}, {"text": text, "finish_reason": "stop", "usage": {}})
    cache.close()
    build_dataset(load_recipe(path), home)
    assert len(fake.requests) == 3 + 2
    assert "2 cached answers asked again: 1 " in caplog.text
    assert "1 over max_tokens" in caplog.text and "1 empty completion" in caplog.text
    assert all_good(cached_texts(home))


def test_timeouts_are_counted_as_such(tmp_path, home):
    server = FakeOpenAI(delay=1.0).start()
    try:
        teacher = fake_teacher(server, timeout=0.2, max_retries=0)
        with pytest.raises(GenerateError, match="2 of 2 requests failed after retries: 2 timeouts"):
            build_dataset(load_recipe(write_recipe(tmp_path, teacher, train=2, digits=3)), home)
    finally:
        server.stop()


def test_an_unreachable_teacher_is_named_by_its_url(tmp_path, home):
    url = "http://127.0.0.1:9/v1"  # the discard port: nothing listens on loopback
    teacher = {"backend": "openai", "model": "m", "base_url": url, "api_key_env": None}
    path = write_recipe(tmp_path, {**teacher, "max_retries": 1})
    with pytest.raises(
        TeacherError, match=rf"^teacher m: cannot reach {re.escape(url)} \(.+; 2 tries\)$"
    ):
        build_dataset(load_recipe(path), home)
