"""Stage 7, publish: copy a built folder into a target under its repo id, tagged with the recipe
hash, and record the returned commit in the run manifest.

Targets take the same folder: `local` (the registry under the home directory, the default) and
`hf` (the Hugging Face Hub, or whatever Hub-compatible endpoint `HF_ENDPOINT` names).
"""

from __future__ import annotations

import time
from pathlib import Path

from factory.hub import HfHub, Published
from factory.paths import registry_dir, run_dir
from factory.pipeline import update_manifest
from factory.recipe import Recipe
from factory.registry import LocalRegistry

TARGETS = ("local", "hf")


class PublishError(RuntimeError):
    """Nothing to publish, or a target that refused it."""


def make_target(name: str, home: Path) -> LocalRegistry | HfHub:
    if name not in TARGETS:
        raise PublishError(f"unknown target {name!r} (use {' or '.join(TARGETS)})")
    return HfHub() if name == "hf" else LocalRegistry(registry_dir(home))


def publish_folder(
    folder: Path,
    repo_id: str,
    repo_type: str,
    recipe: Recipe,
    home: Path,
    target: str,
    message: str,
) -> Published:
    """Publish one folder and return where it went."""
    published = make_target(target, home).publish(
        folder,
        repo_id,
        repo_type,
        tag=recipe.tag,
        message=message,
        private=recipe.dataset.private,
    )
    return published


def record(published: Published, target: str, tag: str) -> dict:
    """What a manifest keeps of a publish: enough to find the exact files again."""
    return {
        "target": target,
        "repo_type": published.repo_type,
        "repo_id": published.repo_id,
        "commit": published.commit,
        "tag": tag,
        "path": str(published.path) if published.path else None,
        "url": published.url,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def publish_dataset(recipe: Recipe, home: Path, target: str | None = None) -> Published:
    """Publish the recipe's built dataset folder."""
    target = target or recipe.target
    run = run_dir(home, recipe.name, recipe.hash)
    folder = run / "dataset"
    if not (folder / "README.md").is_file():
        raise PublishError(
            f"no built dataset for recipe {recipe.name} ({recipe.tag}) in {run}: "
            f"run `cot-factory build {recipe.path or recipe.name}` first"
        )
    published = publish_folder(
        folder,
        recipe.dataset.repo_id,
        "dataset",
        recipe,
        home,
        target,
        f"cot-factory: dataset of recipe {recipe.name} ({recipe.tag})",
    )
    update_manifest(run, {"published_dataset": record(published, target, recipe.tag)})
    return published
