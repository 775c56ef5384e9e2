"""Test-suite set-up: everything offline, every library cache in a throwaway directory.

The environment is set at import time, before anything imports huggingface_hub, datasets or
transformers: those libraries read it once, at import.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="cot-factory-tests-"))
os.environ.update(
    HF_HOME=str(_SESSION_TMP / "hf-home"),
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    HF_UPDATE_DOWNLOAD_COUNTS="0",
    HF_HUB_DISABLE_XET="1",
    TOKENIZERS_PARALLELISM="false",
    COT_FACTORY_HOME=str(_SESSION_TMP / "default-home"),
)
os.environ.pop("HF_TOKEN", None)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


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
