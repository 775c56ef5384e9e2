"""Stage 9, space: a Gradio Space folder to try and compare a recipe's students.

The folder is self-contained: `app.py` (from `spaces/`), `answers.py` (a copy of the very
extractor verification and evaluation use), `space_config.json` (base model, adapters, dataset,
leaderboard), `requirements.txt` and a `README.md` with Space YAML. The same folder runs locally
(`cot-factory demo`) and on Hugging Face Spaces.
"""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from importlib.resources import files
from pathlib import Path

from factory.paths import run_dir
from factory.recipe import Recipe, RecipeError, student_name

PACKAGE = files("factory")
REQUIREMENTS = ("torch", "transformers", "peft", "datasets", "math-verify", "pandas")
CONFIG_FILE = "space_config.json"


def space_repo(recipe: Recipe) -> str:
    namespace = recipe.dataset.repo_id.split("/")[0]
    return recipe.space.repo_id or f"{namespace}/{recipe.name}-demo"


def build_space(recipe: Recipe, home: Path, target: str = "local") -> Path:
    """Write the Space folder for the recipe's published students into the run folder."""
    run = run_dir(home, recipe.name, recipe.hash)
    manifest = _manifest(run, recipe)
    config = space_config(recipe, manifest, home, target)
    out = run / "space"
    tmp = out.with_name("space.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "app.py").write_bytes((PACKAGE / "space_templates" / "app.py").read_bytes())
    (tmp / "answers.py").write_bytes((PACKAGE / "answers.py").read_bytes())
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    (tmp / "requirements.txt").write_text(
        "".join(f"{name}=={metadata.version(name)}\n" for name in REQUIREMENTS)
    )
    _readme(recipe, config).save(tmp / "README.md")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def space_config(recipe: Recipe, manifest: dict, home: Path, target: str) -> dict:
    """The app's config: where the base, the adapters and the dataset are, and the results."""
    from factory.models import hub_id_for, resolve_model

    student = _student(recipe)
    name = student_name(student)
    entries = {
        key.split(":", 2)[2]: value
        for key, value in manifest.items()
        if key.startswith(f"student:{name}:")
    }
    configs = recipe.space.configs or list(entries)
    stats, dataset = manifest["configs"], manifest["published_dataset"]
    local = target == "local"
    base = resolve_model(student.model, home) if local else hub_id_for(student.model)
    adapters = [
        {
            "label": config,
            "config": config,
            "repo_id": entries[config]["repo_id"],
            "repo": entries[config]["path"] if local else entries[config]["repo_id"],
            "revision": None if local else entries[config]["commit"],
            "card_url": None if local else entries[config]["url"],
        }
        for config in configs
        if config in entries
    ]
    if not adapters:
        wanted = f" on {', '.join(configs)}" if configs else ""
        raise RecipeError(
            f"{recipe.path}: no published student {name!r}{wanted} for the Space: "
            f"`cot-factory run {recipe.path}` publishes the students (it reuses the runs a "
            "sweep finished, nothing is retrained)"
        )
    return {
        "title": recipe.space.title or f"cot-factory students: {recipe.name}",
        "description": recipe.description.strip(),
        "task": recipe.source.task,
        "base_model": base or student.model,
        "base_model_id": hub_id_for(student.model),
        "base_label": f"{name} (base)",
        "tokenizer": None,
        "adapters": adapters,
        "dataset": {
            "repo": dataset["path"] if local else dataset["repo_id"],
            "revision": None if local else dataset["commit"],
            "url": dataset.get("url"),
            "problems_config": "problems",
            "split": recipe.eval.split,
            "cot_configs": [
                {"name": c, "teacher": s["teacher"], "format": s["format"], "level": s["level"]}
                for c, s in stats.items()
                if s["kept"]
            ],
        },
        "leaderboard": _report_rows(home, recipe)
        or [
            {
                "student": name,
                "config": config,
                "format": stats[config]["format"],
                "level": stats[config]["level"],
                "teacher": stats[config]["teacher"],
                "accuracy": entry["accuracy"],
                "ci95": entry["ci95"],
                "base_accuracy": entry["base_accuracy"],
                "n": entry.get("n"),
            }
            for config, entry in entries.items()
        ],
        "max_input_tokens": 512,
        "max_new_tokens": recipe.eval.max_new_tokens,
    }


def _report_rows(home: Path, recipe: Recipe) -> list[dict]:
    """The leaderboard of `cot-factory report` (all students, seeds pooled), if there is one."""
    path = run_dir(home, recipe.name, recipe.hash) / "report" / "results.json"
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


def _manifest(run: Path, recipe: Recipe) -> dict:
    path = run / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    if "published_dataset" not in manifest:
        raise RecipeError(
            f"{recipe.path}: nothing published yet: run `cot-factory run {recipe.path}` first"
        )
    return manifest


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
        template_path=str(PACKAGE / "card_templates" / "space_readme.md.jinja"),
        title=config["title"],
        recipe_name=recipe.name,
        tag=recipe.tag,
        base_model=config["base_model"],
        leaderboard=config["leaderboard"],
        dataset_repo=recipe.dataset.repo_id,
        adapters=adapters,
    )
