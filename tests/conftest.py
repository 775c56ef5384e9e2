"""Test-suite set-up: every library cache in a throwaway directory, the Hub on loopback.

The environment is set at import time, before anything imports huggingface_hub, datasets or
transformers: those libraries read it once, at import. `HF_ENDPOINT` points at one `FakeHub`
(tests/fake_hub.py) started here for the whole session, so every Hub call, meant or accidental,
lands on it (an accidental one fails fast with a 404) and huggingface_hub refuses any other host.
Subprocesses inherit the same environment (they go without the host guard).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from fake_hub import FakeHub, install_loopback_guard

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="cot-factory-tests-"))
FAKE_HUB = FakeHub(_SESSION_TMP / "fake-hub").start()
for _name in (
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_DATASETS_CACHE",
    "HF_XET_CACHE",
):
    os.environ.pop(_name, None)
os.environ.update(
    HF_HOME=str(_SESSION_TMP / "hf-home"),
    HF_ENDPOINT=FAKE_HUB.url,
    HF_TOKEN=FAKE_HUB.token,
    HF_HUB_DISABLE_TELEMETRY="1",
    HF_UPDATE_DOWNLOAD_COUNTS="0",
    HF_HUB_DISABLE_XET="1",
    TOKENIZERS_PARALLELISM="false",
    COT_FACTORY_HOME=str(_SESSION_TMP / "default-home"),
)
install_loopback_guard()  # imports huggingface_hub: after the environment is set

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _datasets_without_parquet_export():
    """`load_dataset` would otherwise ask `datasets-server.<host>` for a parquet export."""
    import datasets.config

    datasets.config.USE_PARQUET_EXPORT = False


@pytest.fixture(scope="session")
def fake_hub() -> FakeHub:
    """The session's Hub on loopback (tests/fake_hub.py): `url`, `token`, `read_token`,
    `requests` (the log), `clear_log()`, `fail_next(...)`, `head(repo_id, repo_type)`."""
    return FAKE_HUB


@pytest.fixture(autouse=True)
def _no_leftover_faults():
    """A fault one test injected but did not trigger must not hit the next test."""
    yield
    FAKE_HUB.clear_faults()


@pytest.fixture
def hf_api(fake_hub: FakeHub):
    """An `HfApi` on the fake Hub with its write token."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=fake_hub.url, token=fake_hub.token)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh cot-factory home (registry, cache, runs) for one test."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The public data in ../shared/data; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama chat model folder (see tests/tiny.py), built once per session."""
    from tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "tiny-llama")


@pytest.fixture(scope="session")
def openai_server(tiny_model_dir: Path):
    """A real `transformers serve` on loopback serving the tiny model: a `tiny.ServeHandle` with
    `base_url` (`http://127.0.0.1:PORT/v1`), `model` (the name requests must use) and `process`."""
    from tiny import start_transformers_serve

    handle = start_transformers_serve(tiny_model_dir)
    yield handle
    handle.stop()
