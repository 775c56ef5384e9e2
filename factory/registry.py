"""The local registry: a directory laid out like the Hub, and versioned.

A repo lives at `registry/{datasets,models,spaces}/{namespace}/{name}/` with
`snapshots/{commit}/` (the full folder as published), `refs/main`, `refs/tags/{tag}` (each holding
a 40-hex commit id) and `commits.jsonl` (the history). A commit id is a SHA-1 over the folder's
content and its parent, so publishing an unchanged folder makes no new commit. Every snapshot is a
plain folder: `load_dataset(snapshot, config)` and `PeftModel.from_pretrained(base, snapshot)` read
it as they would a Hub download.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

from factory.hub import REPO_TYPES, HubError, Published, git_blob_sha

log = logging.getLogger(__name__)


def tree_sha(folder: Path) -> str:
    """A content hash of a folder: every relative path with its blob id."""
    entries = sorted(
        f"{p.relative_to(folder).as_posix()} {git_blob_sha(p.read_bytes())}"
        for p in folder.rglob("*")
        if p.is_file()
    )
    return hashlib.sha1("\n".join(entries).encode()).hexdigest()


class LocalRegistry:
    """Publish to and pull from a registry directory."""

    def __init__(self, root: Path):
        self.root = root

    def repo_dir(self, repo_id: str, repo_type: str) -> Path:
        if repo_type not in REPO_TYPES:
            raise HubError(f"unknown repo type {repo_type!r} (use {', '.join(REPO_TYPES)})")
        return self.root / REPO_TYPES[repo_type] / repo_id

    def publish(
        self,
        folder: Path,
        repo_id: str,
        repo_type: str,
        *,
        tag: str | None,
        message: str,
        private: bool = False,
    ) -> Published:
        """Commit `folder` as the new `main` of the repo (unless unchanged) and tag it."""
        repo = self.repo_dir(repo_id, repo_type)
        parent = _read_ref(repo / "refs" / "main")
        tree = tree_sha(folder)
        head = self._commit_record(repo, parent) if parent else None
        created = not head or head["tree"] != tree
        commit = _commit_id(tree, parent, message) if created else parent
        if created:
            snapshot = repo / "snapshots" / commit
            tmp = snapshot.with_name(commit + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(folder, tmp)
            tmp.rename(snapshot)
            record = {
                "commit": commit,
                "parent": parent,
                "tree": tree,
                "message": message,
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            with (repo / "commits.jsonl").open("a") as log_file:
                log_file.write(json.dumps(record) + "\n")
            _write_ref(repo / "refs" / "main", commit)
        if tag:
            self._tag(repo, tag, commit)
        return Published(repo_id, repo_type, commit, repo / "snapshots" / commit, created)

    def pull(
        self,
        repo_id: str,
        revision: str | None = None,
        repo_type: str | None = None,
        to: Path | None = None,
    ) -> Published:
        """The snapshot of a revision (branch `main`, a tag, or a full or short commit id),
        copied to `to` when given."""
        repo_type = repo_type or self.find_type(repo_id)
        repo = self.repo_dir(repo_id, repo_type)
        if not repo.is_dir():
            raise HubError(f"no {repo_type} repo {repo_id!r} in the local registry {self.root}")
        revision = revision or "main"
        commit = _read_ref(repo / "refs" / "tags" / revision) or _read_ref(repo / "refs" / revision)
        if commit is None:
            matches = [
                p.name
                for p in (repo / "snapshots").iterdir()
                if p.name.startswith(revision) and not p.name.endswith(".tmp")
            ]
            commit = matches[0] if len(revision) >= 7 and len(matches) == 1 else None
        if commit is None:
            raise HubError(
                f"{repo_type} repo {repo_id!r} has no revision {revision!r} "
                f"(tags: {', '.join(self.tags(repo_id, repo_type)) or 'none'})"
            )
        snapshot = repo / "snapshots" / commit
        if to:
            shutil.copytree(snapshot, to, dirs_exist_ok=True)
        return Published(repo_id, repo_type, commit, Path(to) if to else snapshot, False)

    def find_type(self, repo_id: str) -> str:
        found = [t for t in REPO_TYPES if self.repo_dir(repo_id, t).is_dir()]
        if not found:
            raise HubError(f"no repo {repo_id!r} in the local registry {self.root}")
        if len(found) > 1:
            raise HubError(f"{repo_id!r} names a {' and a '.join(found)}: pass --repo-type")
        return found[0]

    def tags(self, repo_id: str, repo_type: str) -> list[str]:
        tag_dir = self.repo_dir(repo_id, repo_type) / "refs" / "tags"
        return sorted(p.name for p in tag_dir.iterdir()) if tag_dir.is_dir() else []

    def history(self, repo_id: str, repo_type: str) -> list[dict]:
        path = self.repo_dir(repo_id, repo_type) / "commits.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def _commit_record(self, repo: Path, commit: str) -> dict:
        path = repo / "commits.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines()]
        return next(r for r in records if r["commit"] == commit)

    def _tag(self, repo: Path, tag: str, commit: str) -> None:
        path = repo / "refs" / "tags" / tag
        previous = _read_ref(path)
        if previous and previous != commit:
            log.warning("tag %s moves from %s to %s", tag, previous[:8], commit[:8])
        _write_ref(path, commit)


def _commit_id(tree: str, parent: str | None, message: str) -> str:
    payload = f"tree {tree}\nparent {parent or ''}\ntime {time.time_ns()}\n\n{message}"
    return hashlib.sha1(payload.encode()).hexdigest()


def _read_ref(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None


def _write_ref(path: Path, commit: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(commit + "\n")
    os.replace(tmp, path)
