"""Reproduce a published student from its repo alone: the recipe and the exact dataset revision
it records, the same training settings and seed, the same evaluation, compared with its card."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from factory.hub import HubError, Published
from factory.pipeline import ADAPTER_META


@dataclass(frozen=True)
class Reproduction:
    adapter: Published
    dataset: Published
    meta: dict
    published: dict  # the metrics in the repo's eval_results.json
    reproduced: dict
    out: Path

    @property
    def difference(self) -> float:
        return self.reproduced["accuracy"] - self.published["accuracy"]


def reproduce(repo_id: str, revision: str | None, target: str, home: Path) -> Reproduction:
    """Retrain and re-evaluate the student published as `repo_id` (at `revision`)."""
    from factory.evaluate import evaluate, load_student
    from factory.publish import make_target
    from factory.recipe import load_recipe, student_name
    from factory.train import train_student

    source = make_target(target, home)
    adapter = source.pull(repo_id, revision, "model")
    meta = _read(adapter.path, ADAPTER_META, repo_id)
    published = _read(adapter.path, "eval_results.json", repo_id)
    recipe = load_recipe(adapter.path / "recipe.yaml")
    student = next((s for s in recipe.students if student_name(s) == meta["student"]), None)
    if student is None:
        raise HubError(f"{repo_id}: its recipe has no student named {meta['student']!r}")
    dataset = source.pull(meta["dataset_repo"], meta["dataset_revision"], "dataset")
    out = home / "reproductions" / f"{repo_id.replace('/', '--')}-{adapter.commit[:12]}"
    trained = train_student(recipe, student, meta["config"], dataset.path, out, home)
    model, tokenizer = load_student(student.model, trained.adapter_dir, home)
    reproduced = evaluate(
        model,
        tokenizer,
        held_out_problems(dataset.path),
        recipe.source.task,
        recipe.eval,
        out / "eval",
        label=f"reproduce {meta['config']}",
    )
    return Reproduction(adapter, dataset, meta, published, reproduced, out)


def held_out_problems(dataset_dir: Path):
    """The held-out problems of a published dataset (its `problems` config, `test` split)."""
    from factory.build import PROBLEMS_CONFIG, load_config
    from factory.sources import Problem

    rows = load_config(dataset_dir, PROBLEMS_CONFIG, "test")
    return [Problem(**row) for row in rows]


def _read(folder: Path, name: str, repo_id: str) -> dict:
    path = folder / name
    if not path.is_file():
        raise HubError(f"{repo_id} has no {name}: it was not published by cot-factory run")
    return json.loads(path.read_text())
