"""The `hf` target: the Hugging Face Hub through `HfApi`, the only module that talks to it.

Publishing is `create_repo(exist_ok=True)`, one `upload_folder` commit onto `main` that also
deletes the files the folder no longer has (huggingface_hub itself skips the commit when nothing
changed and answers the current head), and the tag on that commit when the repo has no such tag.
Every call is retried on 429 (honouring `Retry-After`), 5xx and dropped connections; anything
else becomes a `HubError` that says which repo and what to do. The token comes from `HF_TOKEN` or
`hf auth login` and is never written or logged.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from factory.hub.common import HubError, Published, check_repo_type, folder_files

log = logging.getLogger(__name__)

RETRIES, BACKOFF, MAX_WAIT = 5, 1.0, 60.0


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
        """Commit `folder` onto `main` (unless `main` or `tag` already holds it); create `tag`."""
        check_repo_type(repo_type)
        self._require_token(repo_id)
        try:
            self._create_repo(repo_id, repo_type, private)
            tagged = self._tags(repo_id, repo_type).get(tag) if tag else None
            if tagged and self._same_files(folder, repo_id, repo_type, tagged):
                return self._published(repo_id, repo_type, tagged, None, False)
            commit, created = self._commit(folder, repo_id, repo_type, message)
        except HubError as err:
            raise HubError(f"{err} Nothing was published to {repo_id}.") from err.__cause__
        if tag and not tagged:
            self._create_tag(repo_id, repo_type, tag, commit)
        elif tag and tagged != commit:
            log.warning("tag %s on %s stays on %s (tags never move)", tag, repo_id, tagged[:8])
        return self._published(repo_id, repo_type, commit, None, created)

    def pull(
        self,
        repo_id: str,
        revision: str | None = None,
        repo_type: str | None = None,
        to: Path | None = None,
    ) -> Published:
        """Download a revision (default `main`); the type is found when not given."""
        from huggingface_hub import snapshot_download

        repo_type = check_repo_type(repo_type or self._find_type(repo_id))
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
        return self._published(repo_id, repo_type, info.sha, Path(path), False)

    def _create_repo(self, repo_id: str, repo_type: str, private: bool) -> None:
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

    def _commit(self, folder: Path, repo_id: str, repo_type: str, message: str) -> tuple[str, bool]:
        """`main`'s head once it holds `folder`, and whether that took a new commit. A retry
        after a commit whose answer was lost finds nothing to change and answers that commit."""
        head = self._call(repo_id, self.api.repo_info, repo_id, repo_type=repo_type).sha
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
        return info.oid, info.oid != head

    def _tags(self, repo_id: str, repo_type: str) -> dict[str, str]:
        refs = self._call(repo_id, self.api.list_repo_refs, repo_id, repo_type=repo_type)
        return {t.name: t.target_commit for t in refs.tags}

    def _create_tag(self, repo_id: str, repo_type: str, tag: str, commit: str) -> None:
        try:
            self._call(
                repo_id, self.api.create_tag, repo_id, tag=tag, revision=commit, repo_type=repo_type
            )
        except HubError as err:
            raise HubError(
                f"{err} Commit {commit} is on {repo_id} but not tagged {tag}: "
                "publish again to tag it."
            ) from err.__cause__

    def _same_files(self, folder: Path, repo_id: str, repo_type: str, revision: str) -> bool:
        """Whether `revision` holds exactly the files of `folder`."""
        remote = {
            f.path: f
            for f in self._call(
                repo_id,
                lambda: list(
                    self.api.list_repo_tree(
                        repo_id, repo_type=repo_type, revision=revision, recursive=True
                    )
                ),
            )
            if hasattr(f, "blob_id") and f.path != ".gitattributes"
        }
        local = folder_files(folder)
        return set(remote) == set(local) and all(
            _same_content(local[path], remote[path]) for path in local
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

    def _published(self, repo_id, repo_type, commit, path, created) -> Published:
        url = f"{self.api.endpoint}/{_prefix(repo_type)}{repo_id}"
        return Published(repo_id, repo_type, commit, path, created, url)

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
    from huggingface_hub.utils.sha import git_hash

    data = local.read_bytes()
    if remote.lfs:
        return hashlib.sha256(data).hexdigest() == remote.lfs.sha256
    return git_hash(data) == remote.blob_id


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
