"""Secrets never leak: the values of a teacher's `api_key_env` and of the Hub token variables
reach no message, log, traceback or file, even when a teacher server echoes the key back."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import traceback
import uuid
from pathlib import Path

import pytest
import yaml
from fake_openai import FakeOpenAI
from test_generate import fake_teacher, write_recipe

from factory.cache import GenerationCache
from factory.paths import cache_path
from factory.recipe import load_recipe
from factory.run import build_dataset
from factory.secrets import format_exception, install_log_redaction, redact, watch
from factory.teachers import TeacherError

pytestmark = pytest.mark.slow  # starts servers or trains models

KEY_VAR = "COT_FACTORY_TEST_TEACHER_KEY"


def canary(prefix: str) -> str:
    return f"{prefix}-canary-{uuid.uuid4().hex}"


@pytest.fixture
def fake():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def canaries(monkeypatch) -> dict[str, str]:
    """A canary API key in `KEY_VAR` and canary Hub tokens, by variable."""
    values = {
        KEY_VAR: canary("sk"),
        "HF_TOKEN": canary("hf"),
        "HUGGING_FACE_HUB_TOKEN": canary("h"),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def files_holding(root: Path, values: list[str]) -> list[str]:
    """The files under `root` whose bytes contain any of `values`."""
    return [
        str(path)
        for path in root.rglob("*")
        if path.is_file() and any(v.encode() in path.read_bytes() for v in values)
    ]


# --- redaction --------------------------------------------------------------------------------


def test_redact_replaces_each_watched_value(canaries, monkeypatch):
    hf, hub = canaries["HF_TOKEN"], canaries["HUGGING_FACE_HUB_TOKEN"]
    assert redact(f"a {hf} b {hub}.") == (
        "a [redacted $HF_TOKEN] b [redacted $HUGGING_FACE_HUB_TOKEN]."
    )
    openai_key = canary("sk")
    monkeypatch.setenv("OPENAI_API_KEY", openai_key)  # watched before any recipe is read
    assert redact(openai_key) == "[redacted $OPENAI_API_KEY]"
    monkeypatch.setenv("COT_FACTORY_TEST_OTHER", "other-value-long-enough")
    assert redact("other-value-long-enough") == "other-value-long-enough", "not watched yet"
    watch("COT_FACTORY_TEST_OTHER", None)
    assert redact("x other-value-long-enough") == "x [redacted $COT_FACTORY_TEST_OTHER]"
    monkeypatch.setenv("COT_FACTORY_TEST_OTHER", "hunter2")  # under 8 characters: a word
    assert redact("hunter2 says hi") == "hunter2 says hi"
    monkeypatch.setenv("HF_TOKEN", "short")
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", f"{openai_key}-longer")  # holds another value
    assert redact(f"{openai_key}-longer") == "[redacted $HUGGING_FACE_HUB_TOKEN]"


def test_log_filter_redacts_messages_arguments_and_tracebacks(canaries):
    secret = canaries["HF_TOKEN"]
    out, logger = io.StringIO(), logging.getLogger("test_secrets.filter")
    logger.addHandler(logging.StreamHandler(out))
    logger.propagate = False
    install_log_redaction(logger)
    install_log_redaction(logger)
    assert len(logger.handlers[0].filters) == 1, "installing twice adds one filter"
    logger.warning("token %s in the arguments", secret)
    logger.warning(f"token {secret} in the message")
    logger.warning("arguments %s %s that do not fit", secret)
    try:
        raise RuntimeError(f"echoed {secret}")
    except RuntimeError as err:
        logger.exception("failed")
        printed = format_exception(err)
    assert secret not in out.getvalue() and secret not in printed
    assert out.getvalue().count("[redacted $HF_TOKEN]") == 4
    assert "RuntimeError: echoed [redacted $HF_TOKEN]" in printed and "Traceback" in printed


# --- a teacher that echoes the key ------------------------------------------------------------


@pytest.mark.parametrize("key_var", [KEY_VAR, "HF_TOKEN"])  # HF_TOKEN: Inference Providers
def test_a_key_echoed_by_the_teacher_never_leaks(key_var, canaries, fake, tmp_path, home, caplog):
    caplog.set_level(logging.DEBUG)
    fake.faults[:] = ["echo", "401"]  # a completion quoting the key, then a 401 quoting it
    teacher = fake_teacher(fake, api_key_env=key_var, concurrency=1)
    with pytest.raises(TeacherError) as info:
        build_dataset(load_recipe(write_recipe(tmp_path, teacher)), home)
    assert len(fake.requests) >= 2, "one completion, then the 401"
    secrets = list(canaries.values())
    message, printed = str(info.value), "".join(traceback.format_exception(info.value))
    assert "refused the API key" in message and f"[redacted ${key_var}]" in message
    for text in (message, printed, format_exception(info.value), caplog.text):
        assert not any(s in text for s in secrets)
    for record in caplog.records:
        assert not any(s in record.getMessage() + str(record.exc_text) for s in secrets)
    assert files_holding(tmp_path, secrets) == []  # the home, its cache sqlite included
    cache = GenerationCache(cache_path(home))
    (cached,) = cache.responses().values()
    cache.close()
    assert cached["text"].startswith(f"Your key is [redacted ${key_var}].")


# --- the CLI ----------------------------------------------------------------------------------


def cot_factory(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "factory.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_the_cli_never_prints_an_echoed_key(verbose, canaries, fake, tmp_path):
    fake.faults[:] = ["401"]
    path = write_recipe(tmp_path, fake_teacher(fake, api_key_env=KEY_VAR, concurrency=1))
    out = cot_factory("build", str(path), "--home", str(tmp_path / "home"), *verbose)
    assert out.returncode != 0 and "refused the API key" in out.stderr
    assert f"[redacted ${KEY_VAR}]" in out.stderr
    assert not any(s in out.stdout + out.stderr for s in canaries.values())
    assert ("Traceback" in out.stderr) == bool(verbose)
    assert ("HTTP Request: POST" in out.stderr) == bool(verbose), "request logs only with -v"
    assert files_holding(tmp_path, list(canaries.values())) == []


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_the_cli_redacts_any_error_and_traceback(verbose, canaries, tmp_path):
    # A secret inside an error no factory module redacts itself: here the recipe's own path,
    # standing in for any error text that happens to carry a secret value.
    folder = tmp_path / canaries["HF_TOKEN"]
    folder.mkdir()
    path = folder / "bad.yaml"
    path.write_text(yaml.safe_dump({"source": {"kind": "files", "train": "x.jsonl"}}))
    out = cot_factory("build", str(path), "--home", str(tmp_path / "home"), *verbose)
    assert out.returncode != 0 and "[redacted $HF_TOKEN]" in out.stderr
    assert not any(s in out.stdout + out.stderr for s in canaries.values())
    assert ("Traceback" in out.stderr) == bool(verbose)
