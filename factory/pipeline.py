"""Temporary compatibility names for tests being moved to `factory.run` (removed with them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from factory import run as _run


@dataclass(frozen=True)
class _Built:
    run_dir: Path
    dataset_dir: Path
    stats: dict
    built: object


@dataclass(frozen=True)
class _Student:
    repo_id: str
    commit: str
    folder: Path
    base: dict
    distilled: dict


def build_dataset(recipe, home):
    done = _run.build_dataset(recipe, home)
    return _Built(done.run.root, done.run.dataset, done.manifest.configs, done)


def run_recipe(recipe, home, **kwargs):
    import json

    done, entries = _run.run_recipe(recipe, home, **kwargs)
    students = []
    for e in entries:
        folder = Path(e.published.path or e.release)
        distilled = json.loads((folder / "eval_results.json").read_text())
        base = json.loads((done.run.base_eval(e.student) / "eval_results.json").read_text())
        students.append(_Student(e.published.repo_id, e.published.commit, folder, base, distilled))
    return _Built(done.run.root, done.run.dataset, done.manifest.configs, done), students


def student_dir(run: Path, student: str, config: str, seed: int) -> Path:
    return run / "students" / student / config / f"seed-{seed}"
