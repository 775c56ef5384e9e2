"""Where cot-factory keeps its state, and the name of every file it writes.

Everything lives under one home directory: the `--home` flag, else `$COT_FACTORY_HOME`, else the
user's cache directory (`~/.cache/cot-factory` on Linux). One build of one recipe writes its
stages into a run folder:

    {home}/runs/{recipe}-{hash}/
        recipe.yaml                 the recipe as written
        manifest.json               what was built and published (factory.manifest)
        problems/{split}.jsonl      the source's problems
        traces.jsonl                every teacher output with its verification
        dataset/                    the Hub-layout dataset folder
        students/{student}/base/    the untrained student's evaluation
        students/{student}/{config}/seed-{seed}/
            adapter/                the trained adapter, as training saved it
            training_metrics.json   written last: the run is trained
            eval/                   its evaluation: eval_results.json, predictions.jsonl
        release/                    the folders as published: cards added, outputs untouched
        report/                     tables, plots, recommendations
        space/                      the demo Space folder
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
TRAINING_METRICS = "training_metrics.json"
TRAINING_CONFIG = "training_config.json"
EVAL_METRICS = "eval_results.json"
PREDICTIONS = "predictions.jsonl"
ADAPTER_META = "cot_factory.json"  # what `reproduce` needs: student, config, dataset revision
RECIPE_COPY = "recipe.yaml"
REPORT = "report.md"
REPORT_RESULTS = "results.json"


class HomeEscape(ValueError):
    """A path a recipe influences that would land outside the home directory."""


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


def inside(home: Path, path: Path) -> Path:
    """`path`, resolved, after checking that it stays under `home`."""
    resolved = path.resolve()
    if not resolved.is_relative_to(home.resolve()):
        raise HomeEscape(f"{path} would be outside the home directory {home}")
    return resolved


def registry_dir(home: Path) -> Path:
    """The local Hub-like registry the `local` target publishes to."""
    return home / "registry"


def cache_path(home: Path) -> Path:
    """The SQLite file holding every teacher completion ever received."""
    return home / "cache" / "generations.sqlite"


def models_dir(home: Path) -> Path:
    """Converted local models (e.g. the SmolLM2 GGUF saved as safetensors)."""
    return home / "models"


def reproductions_dir(home: Path, repo_id: str, commit: str) -> Path:
    return inside(home, home / "reproductions" / f"{repo_id.replace('/', '--')}-{commit[:12]}")


@dataclass(frozen=True)
class RunFolder:
    """The run folder of one build: every stage's output has its place here."""

    root: Path

    @classmethod
    def of(cls, home: Path, recipe_name: str, recipe_hash: str) -> RunFolder:
        return cls(inside(home, home / "runs" / f"{recipe_name}-{recipe_hash}"))

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    def problems(self, split: str) -> Path:
        return self.root / "problems" / f"{split}.jsonl"

    @property
    def traces(self) -> Path:
        return self.root / "traces.jsonl"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    def base_eval(self, student: str) -> Path:
        return self.root / "students" / student / "base"

    def training(self, student: str, config: str, seed: int) -> Path:
        """One training run: `adapter/` and `training_metrics.json` inside."""
        return self.root / "students" / student / config / f"seed-{seed}"

    def evaluation(self, student: str, config: str, seed: int) -> Path:
        """The trained student's evaluation: `eval_results.json` and `predictions.jsonl`."""
        return self.training(student, config, seed) / "eval"

    def release(self, repo_type: str, repo_id: str) -> Path:
        """The folder published as `repo_id`: the output plus its card, built apart from it."""
        return self.root / "release" / repo_type / repo_id.replace("/", "--")

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def space(self) -> Path:
        return self.root / "space"


def run_dir(home: Path, recipe_name: str, recipe_hash: str) -> Path:
    """The folder one build of one recipe writes its stages into."""
    return RunFolder.of(home, recipe_name, recipe_hash).root
