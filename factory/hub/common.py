"""What both publishing targets share: the published record, the error, the files a publish
takes from a folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_TYPES = ("dataset", "model", "space")
TARGETS = ("local", "hf")


class HubError(RuntimeError):
    """A repo or revision that does not exist, or a publish that did not happen."""


@dataclass(frozen=True)
class Published:
    repo_id: str
    repo_type: str
    commit: str
    path: Path | None  # a local folder holding the files (registry snapshot or download)
    created: bool  # False when no new commit was needed
    url: str | None = None


def check_repo_type(repo_type: str) -> str:
    if repo_type not in REPO_TYPES:
        raise HubError(f"unknown repo type {repo_type!r} (use {', '.join(REPO_TYPES)})")
    return repo_type


def folder_files(folder: Path) -> dict[str, Path]:
    """The files a publish takes from `folder`, by repo path: every file but those
    `upload_folder` never uploads (`.git/`, `.cache/huggingface/`)."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    folder = Path(folder)
    if not folder.is_dir():
        raise HubError(f"nothing to publish: {folder} is not a folder")
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    kept = set(filter_repo_objects(files, ignore_patterns=DEFAULT_IGNORE_PATTERNS))
    if not kept:
        raise HubError(f"nothing to publish: {folder} holds no file")
    return {path: files[path] for path in sorted(kept)}
