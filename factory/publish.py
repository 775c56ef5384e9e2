"""Compatibility names for publishing, kept until their callers move (publishing lives in
`factory.hub`; the run manifest in `factory.run`)."""

from __future__ import annotations

import time
from pathlib import Path

from factory.hub import TARGETS, Published, make_target  # noqa: F401 (re-exported)


class PublishError(RuntimeError):
    """Nothing to publish, or a target that refused it."""


def publish_folder(
    folder: Path, repo_id: str, repo_type: str, recipe, home: Path, target: str, message: str
) -> Published:
    """Publish one folder, tagged with the recipe's tag, and return where it went."""
    return make_target(target, home).publish(
        folder,
        repo_id,
        repo_type,
        tag=recipe.tag,
        message=message,
        private=recipe.dataset.private,
    )


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


def publish_dataset(recipe, home: Path, target: str | None = None) -> Published:
    """Publish the recipe's built dataset folder (through `factory.run`, which records it)."""
    from factory.run import publish_dataset as publish

    done = publish(recipe, home, target)
    path = Path(done.path) if done.path else None
    return Published(done.repo_id, done.repo_type, done.commit, path, done.created, done.url)
