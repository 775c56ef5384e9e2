"""Sweep: train and evaluate every student on every config the recipe builds, with every seed,
all with the same training settings, then write the report.

It resumes: a finished run (trained and evaluated) is skipped, a killed one restarts from its
last checkpoint. Progress counts runs done and left, with an estimated time to finish.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from tqdm.auto import tqdm

from factory.evaluate import read_metrics
from factory.pipeline import BuildResult, build_dataset, student_dir, train_and_evaluate
from factory.recipe import Recipe, RecipeError, student_name
from factory.train import DONE, check_training

log = logging.getLogger(__name__)


def plan_runs(
    recipe: Recipe,
    built: BuildResult,
    students: list[str] | None = None,
    configs: list[str] | None = None,
    seeds: list[int] | None = None,
) -> list[tuple]:
    """(student, config, seed) for every run the sweep owes, in a stable order."""
    chosen = [s for s in recipe.students if not students or student_name(s) in students]
    if not chosen:
        raise RecipeError(f"{recipe.path}: no student to sweep")
    wanted = configs or recipe.train.configs or list(built.stats)
    trainable = [c for c in wanted if built.stats.get(c, {}).get("kept")]
    for config in set(wanted) - set(trainable):
        log.warning("config %s has no training rows: not swept", config)
    return [(s, c, seed) for s in chosen for c in trainable for seed in seeds or recipe.train.seeds]


def is_finished(built: BuildResult, student, config: str, seed: int) -> bool:
    out = student_dir(built.run_dir, student_name(student), config, seed)
    return (out / DONE).is_file() and read_metrics(out / "adapter") is not None


def sweep(
    recipe: Recipe,
    home: Path,
    *,
    students: list[str] | None = None,
    configs: list[str] | None = None,
    seeds: list[int] | None = None,
) -> Path:
    """Run everything still owed; returns the report folder."""
    from factory.report import write_report

    check_training(recipe)
    built = build_dataset(recipe, home)
    runs = plan_runs(recipe, built, students, configs, seeds)
    owed = [run for run in runs if not is_finished(built, *run)]
    log.info(
        "sweep: %d runs, %d already done, %d to go", len(runs), len(runs) - len(owed), len(owed)
    )
    with tqdm(total=len(runs), initial=len(runs) - len(owed), desc="sweep", unit="run") as bar:
        for student, config, seed in owed:
            bar.set_postfix_str(f"{student_name(student)} {config} seed {seed}")
            start = time.perf_counter()
            train_and_evaluate(recipe, student, config, seed, built, home)
            log.info(
                "%s on %s (seed %d) took %.0fs",
                student_name(student),
                config,
                seed,
                time.perf_counter() - start,
            )
            bar.update()
    return write_report(recipe, home)
