"""Publishing targets: one small interface, two places a folder can go.

`make_target("local", home)` is the registry under the home directory (`factory.hub.local`, in
the Hugging Face cache layout), `make_target("hf", home)` the Hugging Face Hub or whatever
Hub-compatible endpoint `HF_ENDPOINT` names (`factory.hub.hf`, the only module that talks to
`HfApi`). Both take the same folder and answer the same two calls:

    target.publish(folder, repo_id, repo_type, *, tag, message, private=False) -> Published
    target.pull(repo_id, revision=None, repo_type=None, to=None) -> Published

`publish` commits the folder onto `main` unless `main` already holds exactly it, and creates
`tag` on that commit. Tags never move: when `tag` already names a commit holding exactly these
files, that commit is returned and nothing is committed; when it names another commit, it stays
there (with a warning).
"""

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


def make_target(name: str, home: Path):
    """The target called `name` ("local" or "hf") for the home directory `home`."""
    if name == "local":
        from factory.hub.local import LocalRegistry
        from factory.paths import registry_dir

        return LocalRegistry(registry_dir(home))
    if name == "hf":
        from factory.hub.hf import HfHub

        return HfHub()
    raise HubError(f"unknown target {name!r} (use {' or '.join(TARGETS)})")


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
