"""Stage 7 (datasets so far), publish: copy a built folder into a target under its repo id,
tagged with the recipe hash, and record the returned commit in the run manifest."""

from __future__ import annotations

import time
from pathlib import Path

from factory.hub import LocalRegistry, Published
from factory.paths import registry_dir, run_dir
from factory.pipeline import update_manifest
from factory.recipe import Recipe


class PublishError(RuntimeError):
    """Nothing to publish, or a target that refused it."""


def publish_dataset(recipe: Recipe, home: Path) -> Published:
    """Publish the recipe's built dataset folder to the local registry."""
    run = run_dir(home, recipe.name, recipe.hash)
    folder = run / "dataset"
    if not (folder / "README.md").is_file():
        raise PublishError(
            f"no built dataset for recipe {recipe.name} ({recipe.tag}) in {run}: "
            f"run `cot-factory build {recipe.path or recipe.name}` first"
        )
    registry = LocalRegistry(registry_dir(home))
    published = registry.publish(
        folder,
        recipe.dataset.repo_id,
        "dataset",
        tag=recipe.tag,
        message=f"cot-factory: dataset of recipe {recipe.name} ({recipe.tag})",
    )
    record = {
        "target": "local",
        "repo_type": "dataset",
        "repo_id": published.repo_id,
        "commit": published.commit,
        "tag": recipe.tag,
        "path": str(published.path),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    update_manifest(run, {"published_dataset": record})
    return published
