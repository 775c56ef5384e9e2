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
