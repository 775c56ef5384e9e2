"""The stages strung together for one recipe, each writing its output into the run folder:

{home}/runs/{recipe}-{hash}/
    recipe.yaml          the recipe as written
    problems/{split}.jsonl
    traces.jsonl         every teacher output with its verification, dropped ones included
    dataset/             the Hub-layout dataset folder (parquet + README.md card)
    manifest.json        what was built, with which versions, and where it was published
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from factory import __version__
from factory.recipe import Recipe

log = logging.getLogger(__name__)
ADAPTER_META = "cot_factory.json"  # what `reproduce` needs: student, config, dataset revision


@dataclass(frozen=True)
class BuildResult:
    recipe: Recipe
    run_dir: Path
    dataset_dir: Path
    stats: dict[str, dict]
    seconds: float


def build_dataset(recipe: Recipe, home: Path) -> BuildResult:
    """source -> generate -> verify -> build, for one recipe."""
    from factory.build import build
    from factory.cache import GenerationCache
    from factory.generate import generate
    from factory.paths import cache_path, run_dir
    from factory.sources import load_problems
    from factory.verify import verify

    start = time.perf_counter()
    out = run_dir(home, recipe.name, recipe.hash)
    out.mkdir(parents=True, exist_ok=True)
    if recipe.path:
        shutil.copyfile(recipe.path, out / "recipe.yaml")
    problems = load_problems(recipe.source, recipe.dataset)
    for split, items in problems.items():
        write_jsonl(out / "problems" / f"{split}.jsonl", [p.to_dict() for p in items])
    log.info("source: %s", ", ".join(f"{len(v)} {k}" for k, v in problems.items()))
    cache = GenerationCache(cache_path(home))
    try:
        traces = generate(recipe, problems["train"], cache, home)
    finally:
        cache.close()
    traces = verify(traces, recipe.source.task, recipe.cot.drop)
    write_jsonl(out / "traces.jsonl", traces)
    stats = build(recipe, problems, traces, out / "dataset")
    seconds = time.perf_counter() - start
    update_manifest(
        out,
        {
            "recipe": recipe.name,
            "recipe_hash": recipe.hash,
            "tag": recipe.tag,
            "dataset_repo": recipe.dataset.repo_id,
            "cot_factory_version": __version__,
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(seconds, 1),
            "configs": stats,
        },
    )
    return BuildResult(recipe, out, out / "dataset", stats, seconds)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write rows atomically: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def update_manifest(run: Path, fields: dict) -> dict:
    """Merge `fields` into the run's manifest.json (atomically) and return it."""
    path = run / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest.update(fields)
    tmp = path.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return manifest


# --- students ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudentResult:
    student: str
    config: str
    repo_id: str
    commit: str
    folder: Path
    base: dict
    distilled: dict
    training: dict


def run_recipe(
    recipe: Recipe,
    home: Path,
    *,
    students: list[str] | None = None,
    configs: list[str] | None = None,
    target: str | None = None,
) -> tuple[BuildResult, list[StudentResult]]:
    """The whole pipeline: build and publish the dataset, then train, evaluate, card and publish
    every student on every config (or the ones named)."""
    from factory.publish import publish_dataset
    from factory.recipe import RecipeError, student_name
    from factory.train import check_training

    check_training(recipe)
    chosen = [s for s in recipe.students if not students or student_name(s) in students]
    if not chosen:
        known = ", ".join(student_name(s) for s in recipe.students) or "none"
        raise RecipeError(f"{recipe.path}: no student to train (students: {known})")
    target = target or recipe.target
    built = build_dataset(recipe, home)
    dataset = publish_dataset(recipe, home, target)
    wanted = configs or recipe.train.configs or list(built.stats)
    results = []
    for student in chosen:
        for config in wanted:
            if built.stats.get(config, {}).get("kept"):
                results.append(
                    distill(recipe, student, config, built, dataset.commit, home, target)
                )
            else:
                log.warning(
                    "config %s has no training rows: %s is not trained on it",
                    config,
                    student_name(student),
                )
    return built, results


def distill(
    recipe: Recipe,
    student,
    config: str,
    built: BuildResult,
    dataset_commit: str,
    home: Path,
    target: str = "local",
) -> StudentResult:
    """Train one student on one config, evaluate it against its base, card and publish it."""
    from factory.publish import publish_folder, record
    from factory.recipe import student_name

    name = student_name(student)
    base, trained, distilled = train_and_evaluate(
        recipe, student, config, recipe.train.seeds[0], built, home
    )
    repo_id = recipe.adapter_repo(student, config)
    _finish_adapter_folder(
        recipe, student, config, built, dataset_commit, base, distilled, trained, repo_id, home
    )
    published = publish_folder(
        trained.adapter_dir,
        repo_id,
        "model",
        recipe,
        home,
        target,
        f"cot-factory: {name} distilled on {config} ({recipe.tag})",
    )
    update_manifest(
        built.run_dir,
        {
            f"student:{name}:{config}": {
                **record(published, target, recipe.tag),
                "base_accuracy": base["accuracy"],
                "accuracy": distilled["accuracy"],
                "ci95": distilled["ci95"],
                "n": distilled["total"],
            }
        },
    )
    folder = published.path or trained.adapter_dir
    return StudentResult(
        name, config, repo_id, published.commit, folder, base, distilled, trained.metrics
    )


def student_dir(run: Path, student: str, config: str, seed: int) -> Path:
    """Where one training run lives: `students/{student}/{config}/seed-{seed}`."""
    return run / "students" / student / config / f"seed-{seed}"


def train_and_evaluate(
    recipe: Recipe, student, config: str, seed: int, built: BuildResult, home: Path
):
    """The base model's metrics, the trained adapter and its metrics; finished work is reused."""
    from factory.evaluate import evaluate, load_student, read_metrics
    from factory.recipe import student_name
    from factory.train import train_student

    name = student_name(student)
    test = _test_problems(built)
    base = _base_metrics(recipe, student, test, built.run_dir / "students" / name / "base", home)
    trained = train_student(
        recipe,
        student,
        config,
        built.dataset_dir,
        student_dir(built.run_dir, name, config, seed),
        home,
        seed,
    )
    distilled = read_metrics(trained.adapter_dir)
    if distilled is None:
        model, tokenizer = load_student(student.model, trained.adapter_dir, home)
        distilled = evaluate(
            model,
            tokenizer,
            test,
            recipe.source.task,
            recipe.eval,
            trained.adapter_dir,
            label=f"{name} {config} seed {seed}",
        )
    return base, trained, distilled


def _test_problems(built: BuildResult):
    from factory.sources import Problem

    path = built.run_dir / "problems" / "test.jsonl"
    if not path.is_file():
        raise ValueError(
            f"{built.recipe.path}: no test split to evaluate on: give the source a "
            "`test` split or set `dataset.test_size`"
        )
    return [Problem(**json.loads(line)) for line in path.read_text().splitlines()]


def _base_metrics(recipe: Recipe, student, test, out: Path, home: Path) -> dict:
    """The undistilled student's accuracy, measured once per run and reused."""
    from factory.evaluate import evaluate, load_student, read_metrics

    cached = read_metrics(out)
    if cached is not None:
        return cached
    model, tokenizer = load_student(student.model, None, home)
    return evaluate(
        model,
        tokenizer,
        test,
        recipe.source.task,
        recipe.eval,
        out,
        label=f"{out.parent.name} base",
    )


def _finish_adapter_folder(
    recipe, student, config, built, dataset_commit, base, distilled, trained, repo_id, home
) -> None:
    """Our card replaces the ones TRL and PEFT wrote; the recipe travels with the adapter."""
    from factory.cards import render_model_card
    from factory.models import hub_id_for, origin_note
    from factory.prompts import describe
    from factory.recipe import student_name
    from factory.train import lora_options, sft_options

    folder = trained.adapter_dir
    (folder / "training_args.bin").unlink(missing_ok=True)
    base_model = hub_id_for(student.model) or student.model
    adapter_config = folder / "adapter_config.json"
    if adapter_config.is_file():  # name the base by Hub id, not this machine's path
        settings = json.loads(adapter_config.read_text())
        settings["base_model_name_or_path"] = base_model
        adapter_config.write_text(json.dumps(settings, indent=2) + "\n")
    if recipe.path:
        shutil.copyfile(recipe.path, folder / "recipe.yaml")
    (folder / ADAPTER_META).write_text(
        json.dumps(
            {
                "student": student_name(student),
                "student_model": student.model,
                "config": config,
                "dataset_repo": recipe.dataset.repo_id,
                "dataset_revision": dataset_commit,
                "recipe": recipe.name,
                "recipe_hash": recipe.hash,
                "tag": recipe.tag,
                "cot_factory_version": __version__,
            },
            indent=2,
        )
        + "\n"
    )
    stats = built.stats[config]
    if stats["format"]:
        shape = describe(stats["format"], stats["level"]).split(": ")[0]
        supervision = f"chain-of-thought rationales by `{stats['teacher']}` ({shape})"
    elif config == "answer-only":
        supervision = "the gold answers alone, with no rationale"
    else:
        supervision = "the source's own reference rationales"
    card = render_model_card(
        recipe,
        student=student_name(student),
        base_model=base_model,
        base_model_note=origin_note(student.model, home),
        config=config,
        supervision=supervision,
        teacher=stats["teacher"],
        repo_id=repo_id,
        dataset_revision=dataset_commit,
        base=base,
        distilled=distilled,
        metrics=trained.metrics,
        sft=sft_options(recipe),
        lora=lora_options(recipe),
        example_question=_test_problems(built)[0].question,
    )
    card.save(folder / "README.md")
