"""Stage 9, space: a Gradio Space folder to try and compare a recipe's students.

The folder is self-contained: `app.py` (from `spaces/`), `answers.py` and `questions.py` (copies
of the very extractor and prompt rendering that verification and evaluation use),
`space_config.json` (base model, adapters, dataset, leaderboard), `requirements.txt` (installable
from PyPI) and a `README.md` with Space YAML. The same folder runs locally (`cot-factory demo`)
and on Hugging Face Spaces.
"""

from __future__ import annotations

import json
from importlib import metadata
from importlib.resources import files
from pathlib import Path

from factory.files import fresh_folder, replace_folder
from factory.manifest import Manifest
from factory.paths import REPORT_RESULTS, RunFolder
from factory.recipe import Recipe, RecipeError, student_name

PACKAGE = files("factory")
APP = files("factory.space_template") / "app.py"
TEMPLATES = files("factory.card_templates")
SHARED_MODULES = ("answers.py", "questions.py")
REQUIREMENTS = ("torch", "transformers", "peft", "datasets", "math-verify", "pandas")
CONFIG_FILE = "space_config.json"


def build_space(
    recipe: Recipe, manifest: Manifest, run: RunFolder, home: Path, target: str
) -> Path:
    """Write the Space folder for the recipe's published students into the run folder."""
    config = space_config(recipe, manifest, run, home, target)
    staging = fresh_folder(run.space.with_name("space.tmp"))
    (staging / "app.py").write_bytes(APP.read_bytes())
    for module in SHARED_MODULES:  # the factory's own extractor and prompt rendering
        (staging / module).write_bytes((PACKAGE / module).read_bytes())
    (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    (staging / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements()))
    _readme(recipe, config).save(staging / "README.md")
    replace_folder(staging, run.space)
    return run.space


def requirements() -> list[str]:
    """The app's packages pinned to the versions here, as PyPI names them: a local build's
    label (`torch==2.13.0+cpu`) is dropped, since no public index serves it."""
    from packaging.version import Version

    return [f"{name}=={Version(metadata.version(name)).public}" for name in REQUIREMENTS]


def space_config(
    recipe: Recipe, manifest: Manifest, run: RunFolder, home: Path, target: str
) -> dict:
    """The app's config: where the base, the adapters and the dataset are, and the results.
    `local` names folders on this machine (the run's released folders, whatever target they
    were published to); `hf` names Hub repos and the commits published there."""
    from factory.models import hub_id_for, resolve_model

    student = _student(recipe)
    name = student_name(student)
    entries = {e.config: e for e in manifest.students if e.student == name}
    configs = [c for c in recipe.space.configs or list(entries) if c in entries]
    if not configs:
        wanted = f" on {', '.join(recipe.space.configs)}" if recipe.space.configs else ""
        raise RecipeError(
            f"{recipe.path}: no published student {name!r}{wanted} for the Space: "
            f"`cot-factory run {recipe.path}` publishes the students (it reuses the runs a "
            "sweep finished, nothing is retrained)"
        )
    local = target == "local"
    adapters = [_adapter(entries[config], local, name) for config in configs]
    base = resolve_model(student.model, home) if local else hub_id_for(student.model)
    return {
        "title": recipe.space.title or f"cot-factory students: {recipe.name}",
        "description": recipe.description.strip(),
        "task": recipe.source.task,
        "base_model": base or student.model,
        "base_model_id": hub_id_for(student.model),
        "base_label": f"{name} (base)",
        "tokenizer": None,
        "adapters": adapters,
        "dataset": _dataset(manifest, run, local),
        "leaderboard": _report_rows(run)
        or [_board_row(e, manifest.configs[e.config]) for e in entries.values()],
        "max_input_tokens": 512,
        "max_new_tokens": recipe.eval.max_new_tokens
        or max((entries[c].max_new_tokens or 0 for c in configs), default=0)
        or None,
    }


def _adapter(entry, local: bool, student: str) -> dict:
    record = entry.published
    if not local and record.target != "hf":
        raise RecipeError(
            f"{student} on {entry.config} was published to the {record.target} target, not the "
            "Hub: publish it with `--target hf` before building a Space for the Hub"
        )
    return {
        "label": entry.config,
        "config": entry.config,
        "repo_id": record.repo_id,
        "repo": entry.release if local else record.repo_id,
        "revision": None if local else record.commit,
        "card_url": record.url,
    }


def _dataset(manifest: Manifest, run: RunFolder, local: bool) -> dict:
    record = manifest.dataset
    return {
        "repo": str(run.dataset) if local else record.repo_id,
        "revision": None if local else record.commit,
        "url": record.url,
        "problems_config": "problems",
        "split": "test",
        "cot_configs": [
            {"name": c, "teacher": s["teacher"], "format": s["format"], "level": s["level"]}
            for c, s in manifest.configs.items()
            if s["kept"]
        ],
    }


def _board_row(entry, stats: dict) -> dict:
    return {
        "student": entry.student,
        "config": entry.config,
        "format": stats["format"],
        "level": stats["level"],
        "teacher": stats["teacher"],
        "accuracy": entry.accuracy,
        "ci95": entry.ci95,
        "base_accuracy": entry.base_accuracy,
        "n": entry.n,
    }


def _report_rows(run: RunFolder) -> list[dict]:
    """The leaderboard of `cot-factory report` (all students, seeds pooled), if there is one."""
    path = run.report / REPORT_RESULTS
    if not path.is_file():
        return []
    report = json.loads(path.read_text())
    keys = ("student", "config", "format", "level", "teacher", "accuracy", "ci95")
    return [
        {
            **{k: run[k] for k in keys},
            "n": run["total"],
            "seeds": run["seeds"],
            "base_accuracy": report["base"].get(run["student"], {}).get("accuracy"),
        }
        for run in report["runs"]
    ]


def _student(recipe: Recipe):
    wanted = recipe.space.student
    for student in recipe.students:
        if wanted in (None, student_name(student)):
            return student
    raise RecipeError(f"{recipe.path}: space.student {wanted!r} is not one of the students")


def _readme(recipe: Recipe, config: dict):
    from huggingface_hub import SpaceCard, SpaceCardData

    adapters = config["adapters"]
    card_data = SpaceCardData(
        title=config["title"][:60],
        sdk="gradio",
        sdk_version=metadata.version("gradio"),
        app_file="app.py",
        license=recipe.dataset.license,
        models=[m for m in [config["base_model_id"], *(a["repo_id"] for a in adapters)] if m],
        datasets=[recipe.dataset.repo_id],
        tags=["cot-factory", "chain-of-thought", "distillation"],
        emoji="🧮",
        colorFrom="indigo",
        colorTo="green",
        pinned=False,
        short_description=f"Compare distilled students side by side ({len(adapters)} adapters)"[
            :60
        ],
        suggested_hardware=recipe.space.hardware,
    )
    return SpaceCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "space_readme.md.jinja"),
        title=config["title"],
        recipe_name=recipe.name,
        tag=recipe.tag,
        base_model=config["base_model"],
        leaderboard=config["leaderboard"],
        dataset_repo=recipe.dataset.repo_id,
        adapters=adapters,
    )
