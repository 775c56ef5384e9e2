"""Where cot-factory keeps its state: the local registry, the generation cache, runs and models.

Everything lives under one home directory: the `--home` flag, else `$COT_FACTORY_HOME`, else the
user's cache directory (`~/.cache/cot-factory` on Linux).
"""

from __future__ import annotations

import os
from pathlib import Path


def home_dir(explicit: str | Path | None = None) -> Path:
    """The home directory, created on first use."""
    if explicit:
        home = Path(explicit)
    elif os.environ.get("COT_FACTORY_HOME"):
        home = Path(os.environ["COT_FACTORY_HOME"])
    else:
        from platformdirs import user_cache_dir

        home = Path(user_cache_dir("cot-factory"))
    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def registry_dir(home: Path) -> Path:
    """The local Hub-like registry: `{datasets,models,spaces}/{namespace}/{name}`."""
    return home / "registry"


def cache_path(home: Path) -> Path:
    """The SQLite file holding every teacher completion ever received."""
    return home / "cache" / "generations.sqlite"


def run_dir(home: Path, recipe_name: str, recipe_hash: str) -> Path:
    """The folder one build of one recipe writes its stages into."""
    return home / "runs" / f"{recipe_name}-{recipe_hash}"


def models_dir(home: Path) -> Path:
    """Converted local models (e.g. the SmolLM2 GGUF saved as safetensors)."""
    return home / "models"
