"""The Hugging Face Hub target: the only module that talks to `HfApi`.

Publishing is `create_repo(exist_ok=True)`, one `upload_folder` commit (files the folder no
longer has are deleted), and a tag naming the recipe hash on that commit. A folder identical to
the repo's head makes no commit. Every call is retried on 429 (honouring `Retry-After`), 5xx and
dropped connections; anything else becomes a `HubError` that says which repo and what to do. The
token comes from `HF_TOKEN` or `hf auth login` and is never written or logged.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO_TYPES = {"dataset": "datasets", "model": "models", "space": "spaces"}
RETRIES, BACKOFF, MAX_WAIT = 5, 1.0, 60.0


class HubError(RuntimeError):
    """A repo or revision that does not exist, or a publish that did not happen."""


@dataclass(frozen=True)
class Published:
    repo_id: str
    repo_type: str
    commit: str
    path: Path | None  # a local folder holding the files (registry snapshot or download)
    created: bool  # False when the folder was already the latest commit
    url: str | None = None


def git_blob_sha(data: bytes) -> str:
    """The id git (and the Hub) gives a file's content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HfHub:
    """Publish to and pull from the Hub (or any Hub-compatible endpoint the `HfApi` points at)."""

    def __init__(self, api=None):
        from huggingface_hub import HfApi

        self.api = api or HfApi()

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
        """Make `folder` the head of the repo (unless it already is) and tag that commit."""
        self._require_token(repo_id)
        try:
            head, created = self._commit(folder, repo_id, repo_type, message, private)
        except HubError as err:
            raise HubError(f"{err} Nothing was published to {repo_id}.") from err.__cause__
        if tag:
            try:
                self._tag(repo_id, repo_type, tag, head)
            except HubError as err:
                raise HubError(
                    f"{err} Commit {head} is on {repo_id} but not tagged {tag}: "
                    "publish again to tag it."
                ) from err.__cause__
        url = f"{self.api.endpoint}/{_prefix(repo_type)}{repo_id}"
        return Published(repo_id, repo_type, head, None, created, url)

    def _commit(
        self, folder: Path, repo_id: str, repo_type: str, message: str, private: bool
    ) -> tuple[str, bool]:
        """The repo's head after making it hold `folder`, and whether that took a new commit."""
        sdk = {"space_sdk": "gradio"} if repo_type == "space" else {}
        self._call(
            repo_id,
            self.api.create_repo,
            repo_id,
            repo_type=repo_type,
            private=private,
            exist_ok=True,
            **sdk,
        )
        head = self._call(repo_id, self.api.repo_info, repo_id, repo_type=repo_type).sha
        if self._same_files(folder, repo_id, repo_type):
            return head, False
        try:
            info = self._call(
                repo_id,
                self.api.upload_folder,
                repo_id=repo_id,
                folder_path=str(folder),
                repo_type=repo_type,
                commit_message=message,
                delete_patterns="*",
                parent_commit=head,
            )
            return info.oid, True
        except HubError:
            # A commit can land while its answer is lost; the retry then finds the head moved.
            if not self._same_files(folder, repo_id, repo_type):
                raise
            log.warning("the commit to %s landed although its answer was lost", repo_id)
            return self._call(repo_id, self.api.repo_info, repo_id, repo_type=repo_type).sha, True

    def pull(
        self, repo_id: str, revision: str | None, repo_type: str | None, to: Path | None = None
    ) -> Published:
        """Download a revision (default `main`); the type is found when not given."""
        from huggingface_hub import snapshot_download

        repo_type = repo_type or self._find_type(repo_id)
        info = self._call(
            repo_id, self.api.repo_info, repo_id, repo_type=repo_type, revision=revision
        )
        path = self._call(
            repo_id,
            snapshot_download,
            repo_id,
            repo_type=repo_type,
            revision=info.sha,
            local_dir=str(to) if to else None,
            endpoint=self.api.endpoint,
            token=self.api.token,
        )
        return Published(
            repo_id,
            repo_type,
            info.sha,
            Path(path),
            False,
            f"{self.api.endpoint}/{_prefix(repo_type)}{repo_id}",
        )

    def _find_type(self, repo_id: str) -> str:
        from huggingface_hub.errors import RepositoryNotFoundError

        for repo_type in ("model", "dataset", "space"):
            try:
                self._call(repo_id, self.api.repo_info, repo_id, repo_type=repo_type)
                return repo_type
            except HubError as err:
                if not isinstance(err.__cause__, RepositoryNotFoundError):
                    raise
        raise HubError(f"no repo {repo_id!r} on {self.api.endpoint} (or the token cannot see it)")

    def _same_files(self, folder: Path, repo_id: str, repo_type: str) -> bool:
        remote = {
            f.path: f
            for f in self._call(
                repo_id,
                lambda: list(self.api.list_repo_tree(repo_id, repo_type=repo_type, recursive=True)),
            )
            if hasattr(f, "blob_id") and f.path != ".gitattributes"
        }
        local = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
        if set(remote) != set(local):
            return False
        return all(_same_content(local[path], remote[path]) for path in local)

    def _tag(self, repo_id: str, repo_type: str, tag: str, commit: str) -> None:
        refs = self._call(repo_id, self.api.list_repo_refs, repo_id, repo_type=repo_type)
        current = next((t.target_commit for t in refs.tags if t.name == tag), None)
        if current == commit:
            return
        if current:
            log.warning("tag %s on %s moves from %s to %s", tag, repo_id, current[:8], commit[:8])
            self._call(repo_id, self.api.delete_tag, repo_id, tag=tag, repo_type=repo_type)
        self._call(
            repo_id, self.api.create_tag, repo_id, tag=tag, revision=commit, repo_type=repo_type
        )

    def _require_token(self, repo_id: str) -> None:
        from huggingface_hub import get_token

        if not (self.api.token or get_token()):
            raise HubError(
                f"cannot publish {repo_id}: no Hugging Face token. Set HF_TOKEN or "
                "run `hf auth login` (a token with write access)"
            )

    def _call(self, repo: str, fn: Callable, /, *args, **kwargs) -> Any:
        """Call the Hub about `repo`, retrying what is worth retrying; explain what is not."""
        for attempt in range(RETRIES + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as err:
                wait = _retry_wait(err, attempt)
                if wait is None or attempt == RETRIES:
                    raise _explain(err, repo, self.api.endpoint, attempt) from err
                log.warning(
                    "Hub call for %s failed (%s); retrying in %.1fs", repo, _short(err), wait
                )
                time.sleep(wait)
        raise AssertionError("unreachable")


def _same_content(local: Path, remote) -> bool:
    data = local.read_bytes()
    if remote.lfs:
        return hashlib.sha256(data).hexdigest() == remote.lfs.sha256
    return git_blob_sha(data) == remote.blob_id


def _status(err: Exception) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _dropped(err: Exception) -> bool:
    """A connection refused, reset or closed without an answer. Matched by name: huggingface_hub
    has moved between HTTP clients (requests, httpx, httpx2), all with a `TransportError`."""
    names = {cls.__name__ for cls in type(err).__mro__}
    return bool(names & {"TransportError", "ConnectionError"})


def _retry_wait(err: Exception, attempt: int) -> float | None:
    """Seconds to wait before retrying `err`, or None when retrying cannot help."""
    if _dropped(err) or _status(err) in (429, 500, 502, 503, 504):
        after = getattr(getattr(err, "response", None), "headers", {}).get("Retry-After")
        if after and after.isdigit():
            return min(float(after), MAX_WAIT)
        return min(BACKOFF * 2**attempt, MAX_WAIT) * (0.75 + 0.5 * random.random())
    return None


def _explain(err: Exception, repo_id: str, endpoint: str, attempt: int) -> HubError:
    status = _status(err)
    messages = {
        401: "the Hub refused the token (401): check HF_TOKEN or `hf auth login`",
        403: f"the token may not write to {repo_id} (403): it needs write access to the "
        f"namespace {repo_id.split('/')[0]!r}",
        404: f"{repo_id} (or that revision or file) does not exist on {endpoint}, or the token "
        "cannot see it (404)",
        409: f"{repo_id} changed while publishing (409 conflict): publish again",
        412: f"{repo_id} changed while publishing (412: its head moved): publish again",
    }
    if status in messages:
        return HubError(f"{messages[status]}.")
    tries = f" after {attempt + 1} attempts" if attempt else ""
    return HubError(f"the Hub call for {repo_id} failed{tries}: {_short(err)}.")


def _short(err: Exception) -> str:
    status = _status(err)
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"{status} {text}" if status and str(status) not in text else text


def _prefix(repo_type: str) -> str:
    return {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
