"""The `local` target: a registry directory in the Hugging Face cache layout, versioned and
crash-safe.

A repo lives at `{registry}/{datasets|models|spaces}--{namespace}--{name}/`, laid out as
huggingface_hub lays out its cache: `blobs/{git blob id}` (each content once),
`snapshots/{commit}/` (the folder as published, each file a symlink to its blob) and
`refs/{main,<tag>}` (each holding a commit id). So stock clients resolve a published repo by its
id, offline: `snapshot_download(repo_id, repo_type=..., revision=..., cache_dir=registry)` and
`PeftModel.from_pretrained(base, repo_id, cache_dir=registry)`, or any call with
`HF_HUB_CACHE=registry HF_HUB_OFFLINE=1`.

A commit id is a SHA-1 over the folder's tree (paths and git blob ids), its parent and its
message: republishing an unchanged folder makes no commit, and the same history has the same ids
everywhere.

Crash safety: `refs` is a symlink into an immutable state folder, `.state/{hash}/`, that holds the
refs and `commits.jsonl` (the history) together. A publish writes the blobs, then the snapshot
(built as `snapshots/{commit}.tmp`, renamed once complete), then a new state folder, and commits
by atomically replacing the `refs` symlink: killed at any point, the registry shows the old state
or the new one, never a mix. The next publish, under a per-repo lock in `.locks/`, removes what
an interrupted one left (temporary folders, and snapshots, blobs and states no ref reaches).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from huggingface_hub.utils.sha import git_hash

from factory.hub.common import REPO_TYPES, HubError, Published, check_repo_type, folder_files

log = logging.getLogger(__name__)

STATE = ".state"


class LocalRegistry:
    """Publish to and pull from a registry directory."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def repo_dir(self, repo_id: str, repo_type: str) -> Path:
        from huggingface_hub.file_download import repo_folder_name

        check_repo_type(repo_type)
        parts = repo_id.split("/")
        if len(parts) != 2 or any(part in ("", ".", "..") for part in parts):
            raise HubError(f"{repo_id!r} is not a repo id: use namespace/name")
        return self.root / repo_folder_name(repo_id=repo_id, repo_type=repo_type)

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
        """Commit `folder` onto `main` (unless `main` or `tag` already holds it); create `tag`.
        `private` changes nothing here: the registry is as private as its directory."""
        repo = self.repo_dir(repo_id, repo_type)
        if tag == "main" or (tag and any(p in ("", ".", "..") for p in tag.split("/"))):
            raise HubError(f"{tag!r} cannot be a tag (`main` is the branch; no empty or dot parts)")
        blobs = {path: git_hash(file.read_bytes()) for path, file in folder_files(folder).items()}
        tree = _tree_id(blobs)
        with _lock(self.root, repo.name):
            _clean(repo)
            refs, history = _read_state(repo)
            trees = {record["commit"]: record["tree"] for record in history}
            if tag in refs and trees.get(refs[tag]) == tree:
                return self._published(repo_id, repo_type, refs[tag], False)
            parent = refs.get("main")
            created = parent is None or trees.get(parent) != tree
            commit = _commit_id(tree, parent, message) if created else parent
            if created:
                _write_snapshot(repo, commit, Path(folder), blobs)
                history = [*history, _record(commit, parent, tree, message)]
            new_refs = _moved(refs, commit, tag, repo_id)
            if new_refs != refs:
                _write_state(repo, new_refs, history)
        return self._published(repo_id, repo_type, commit, created)

    def pull(
        self,
        repo_id: str,
        revision: str | None = None,
        repo_type: str | None = None,
        to: Path | None = None,
    ) -> Published:
        """The snapshot of a revision (`main`, a tag, or a full or short commit id), copied to
        `to` when given."""
        repo_type = repo_type or self.find_type(repo_id)
        refs, history = _read_state(self.repo_dir(repo_id, repo_type))
        if "main" not in refs:
            raise HubError(f"no {repo_type} repo {repo_id!r} in the local registry {self.root}")
        commit = _resolve(revision or "main", refs, history)
        if commit is None:
            raise HubError(
                f"{repo_type} repo {repo_id!r} has no revision {revision!r} "
                f"(tags: {', '.join(self.tags(repo_id, repo_type)) or 'none'})"
            )
        found = self._published(repo_id, repo_type, commit, False)
        if not to:
            return found
        shutil.copytree(found.path, to, dirs_exist_ok=True)
        return Published(repo_id, repo_type, commit, Path(to), False)

    def find_type(self, repo_id: str) -> str:
        found = [t for t in REPO_TYPES if (self.repo_dir(repo_id, t) / "refs" / "main").is_file()]
        if not found:
            raise HubError(f"no repo {repo_id!r} in the local registry {self.root}")
        if len(found) > 1:
            raise HubError(f"{repo_id!r} names a {' and a '.join(found)}: pass --repo-type")
        return found[0]

    def tags(self, repo_id: str, repo_type: str) -> list[str]:
        return sorted(set(_read_state(self.repo_dir(repo_id, repo_type))[0]) - {"main"})

    def history(self, repo_id: str, repo_type: str) -> list[dict]:
        """Every commit of `main`, oldest first: commit, parent, tree, message, date."""
        return _read_state(self.repo_dir(repo_id, repo_type))[1]

    def _published(self, repo_id: str, repo_type: str, commit: str, created: bool) -> Published:
        snapshot = self.repo_dir(repo_id, repo_type) / "snapshots" / commit
        return Published(repo_id, repo_type, commit, snapshot, created)


def _tree_id(blobs: dict[str, str]) -> str:
    lines = "".join(f"{path} {blob}\n" for path, blob in sorted(blobs.items()))
    return hashlib.sha1(lines.encode()).hexdigest()


def _commit_id(tree: str, parent: str | None, message: str) -> str:
    return hashlib.sha1(f"tree {tree}\nparent {parent or ''}\n\n{message}".encode()).hexdigest()


def _record(commit: str, parent: str | None, tree: str, message: str) -> dict:
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"commit": commit, "parent": parent, "tree": tree, "message": message, "date": date}


def _moved(refs: dict[str, str], commit: str, tag: str | None, repo_id: str) -> dict[str, str]:
    """The refs once `main` is at `commit` and a new `tag` names it; an existing tag stays."""
    if tag and tag in refs and refs[tag] != commit:
        log.warning("tag %s of %s stays on %s (tags never move)", tag, repo_id, refs[tag])
    return {**refs, "main": commit, **({tag: commit} if tag and tag not in refs else {})}


def _resolve(revision: str, refs: dict[str, str], history: list[dict]) -> str | None:
    if revision in refs:
        return refs[revision]
    matches = [r["commit"] for r in history if r["commit"].startswith(revision)]
    return matches[0] if len(revision) >= 7 and len(matches) == 1 else None


def _read_state(repo: Path) -> tuple[dict[str, str], list[dict]]:
    """The refs and the history of the state `refs` points at (one immutable folder)."""
    state = _current_state(repo)
    if state is None:
        return {}, []
    refs = repo / STATE / state / "refs"
    names = {p.relative_to(refs).as_posix(): p.read_text() for p in refs.rglob("*") if p.is_file()}
    return names, _read_history(refs.parent / "commits.jsonl")


def _current_state(repo: Path) -> str | None:
    """The name of the state folder `refs` links to (`.state/{name}/refs`), if any."""
    link = repo / "refs"
    return Path(os.readlink(link)).parent.name if link.is_symlink() else None


def _read_history(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s: skipping a torn line", path)
    return records


def _write_snapshot(repo: Path, commit: str, folder: Path, blobs: dict[str, str]) -> None:
    """Store the blobs the folder needs, then its snapshot, built aside and renamed whole."""
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for path, blob in blobs.items():
        if not (repo / "blobs" / blob).is_file():
            _copy_atomic(folder / path, repo / "blobs" / blob)
    tmp = repo / "snapshots" / f"{commit}.tmp"
    for path, blob in blobs.items():
        link = tmp / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(repo / "blobs" / blob, link.parent))
    tmp.rename(tmp.with_name(commit))


def _write_state(repo: Path, refs: dict[str, str], history: list[dict]) -> None:
    """Write refs and history as a new state folder, then point `refs` at it: that one atomic
    rename is the commit."""
    files = {f"refs/{name}": commit for name, commit in refs.items()}
    files["commits.jsonl"] = "".join(json.dumps(record) + "\n" for record in history)
    name = hashlib.sha1(json.dumps(files, sort_keys=True).encode()).hexdigest()
    tmp = repo / STATE / f"{name}.tmp"
    for path, text in files.items():
        _write(tmp / path, text.encode())
    tmp.rename(tmp.with_name(name))
    link = repo / "refs.tmp"
    link.symlink_to(f"{STATE}/{name}/refs")
    os.replace(link, repo / "refs")


def _clean(repo: Path) -> None:
    """Remove what interrupted publishes left: whatever the current state does not reach."""
    if not repo.is_dir():
        return
    state, (refs, history) = _current_state(repo), _read_state(repo)
    live = {record["commit"] for record in history} | set(refs.values())
    _remove(repo / "refs.tmp")
    for path in _children(repo / STATE):
        if path.name != state:
            _remove(path)
    for path in _children(repo / "snapshots"):
        if path.name not in live:
            _remove(path)
    used = {Path(os.readlink(p)).name for p in _links(repo / "snapshots")}
    for path in _children(repo / "blobs"):
        if path.name not in used:
            _remove(path)


def _children(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _links(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_symlink()] if folder.is_dir() else []


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _copy_atomic(source: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    with open(source, "rb") as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, target)


@contextmanager
def _lock(root: Path, name: str):
    """One publish per repo at a time (the lock goes with the process, however it ends)."""
    from huggingface_hub.utils import WeakFileLock

    path = root / ".locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(path):
        yield
