"""A Hub-compatible HTTP server for tests: the real huggingface_hub, datasets and peft clients
create repos, upload, commit, tag and download against it on loopback.

It speaks the routes the clients use (see docs/hub-facts.md) for models, datasets and spaces, and
keeps git-like history: every commit has a 40-hex sha, a parent and a full snapshot of its tree;
branches and tags are refs. File contents live on disk under `root/objects/{sha256}`, the rest in
memory. Tests read `FakeHub.requests` (method, path, status of every request) and inject failures
with `FakeHub.fail_next`. `install_loopback_guard` makes huggingface_hub refuse any other host.

Only the standard library and PyYAML are imported here, so conftest can start the server before
anything imports huggingface_hub (which reads its environment once, at import).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SUFFIXES = (".parquet", ".safetensors", ".bin", ".arrow", ".pt", ".pth", ".ckpt", ".gguf")
LFS_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(
    f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES
)
YAML_BLOCK = re.compile(r"^\s*---[\r\n]+([\S\s]*?)[\r\n]+---(\r\n|\n|$)")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
NO_XET = (
    "this fake Hub does not speak Xet: set HF_HUB_DISABLE_XET=1 before importing huggingface_hub"
)
STALE_PARENT = "A commit has happened since. Please refresh and try again."


def git_blob_sha(data: bytes) -> str:
    """The id git (and the Hub) gives a file's content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def iso(timestamp: float) -> str:
    """The Hub's date format, e.g. `2024-05-01T12:00:00.123Z`."""
    millis = int(timestamp % 1 * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + f".{millis:03d}Z"


def card_data(text: str) -> dict:
    """The YAML metadata block at the top of a README, `{}` when there is none or it is broken."""
    match = YAML_BLOCK.match(text)
    try:
        data = yaml.safe_load(match.group(1)) if match else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


class HubError(Exception):
    """An error answer: status, message, and the Hub's `X-Error-Code` when it has one."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.commit = extra.pop("commit", None)  # sent as X-Repo-Commit (a missing file's 404)
        self.extra = extra  # more fields for the JSON body


class LoggedRequest(NamedTuple):
    method: str
    path: str  # as sent: still URL-quoted, without the query string
    status: int | str  # the status answered, or "drop" / "drop_after" (no answer came back)


@dataclass(frozen=True)
class Blob:
    oid: str  # git blob sha1 of the content, or of the LFS pointer for LFS files
    sha256: str  # of the content: the key of the stored object
    size: int
    lfs: bool

    def _lfs(self, sha_key: str) -> dict:
        if not self.lfs:
            return {}
        pointer_size = len(lfs_pointer(self.sha256, self.size))
        return {"lfs": {sha_key: self.sha256, "size": self.size, "pointerSize": pointer_size}}

    def tree_entry(self, path: str) -> dict:
        """As `/tree` and `/paths-info` list it."""
        return {"type": "file", "path": path, "oid": self.oid, "size": self.size} | self._lfs("oid")

    def sibling(self, path: str) -> dict:
        """As repo info lists it."""
        return {"rfilename": path, "size": self.size, "blobId": self.oid} | self._lfs("sha256")


@dataclass
class Commit:
    sha: str
    parent: str | None
    title: str
    message: str
    date: float
    tree: dict[str, Blob]

    def to_json(self, author: str) -> dict:
        about = {"id": self.sha, "title": self.title, "message": self.message}
        return about | {"date": iso(self.date), "authors": [{"user": author}]}


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    sdk: str | None
    created: float = field(default_factory=time.time)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    lfs: set[str] = field(default_factory=set)  # sha256 of the LFS objects uploaded to this repo

    def resolve(self, rev: str) -> Commit:
        """A branch, a tag (either maybe spelled `refs/heads/...`/`refs/tags/...`) or a full sha."""
        sha = (
            self.branches.get(rev.removeprefix("refs/heads/"))
            or self.tags.get(rev.removeprefix("refs/tags/"))
            or (rev if rev in self.commits else None)
        )
        if sha is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return self.commits[sha]

    def url(self, base: str) -> str:
        return f"{base}/{URL_PREFIX[self.type]}{self.id}"


@dataclass
class Request:
    method: str
    path: str  # raw, still URL-quoted
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    access: str = "anonymous"  # "write", "read" or "anonymous"

    def json(self):
        return json.loads(self.body or b"{}")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(data, status: int = 200, content_type: str = "application/json", **headers):
    headers = {"Content-Type": content_type, **headers}
    return Response(status, json.dumps(data).encode(), headers)


@dataclass
class _Fault:
    action: int | str  # a status, "drop" (no answer) or "drop_after" (handled, then no answer)
    count: int
    path_contains: str | None
    method: str | None

    def matches(self, method: str, path: str) -> bool:
        return (self.path_contains is None or self.path_contains in path) and (
            self.method is None or self.method == method
        )


class FakeHub:
    """The server. `FakeHub(root).start()` listens on a free loopback port; `url` is its address.

    `token` may write everywhere; `read_token` may only read (writes answer 403); any other bearer
    token answers 401 on every route, as the Hub does. Every namespace belongs to `user`.
    """

    def __init__(
        self,
        root: Path,
        token: str = "hf_fake_write_token",
        read_token: str = "hf_fake_read_token",
        user: str = "tester",
        orgs: tuple[str, ...] = ("cot-org",),
    ):
        self.root = Path(root)
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        self.token, self.read_token, self.user, self.orgs = token, read_token, user, orgs
        self.url = ""
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._log: list[LoggedRequest] = []
        self._faults: list[_Fault] = []
        self._commit_count = 0
        self._server: _Server | None = None

    # -- life cycle and the API tests use ------------------------------------------------------

    def start(self) -> FakeHub:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hub = self
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request answered (or dropped) since the last `clear_log`, oldest first."""
        with self._lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def fail_next(
        self,
        status: int | str,
        count: int = 1,
        path_contains: str | None = None,
        method: str | None = None,
    ) -> None:
        """Make the next `count` matching requests fail instead of being handled.

        `status` is an HTTP status (429 comes with `Retry-After: 1`), `"drop"` (read the request,
        close the connection without answering, change nothing) or `"drop_after"` (handle it, then
        close without answering: a commit that landed but whose answer was lost). A request
        matches when `path_contains` is in its raw path and `method` is its method (None: any).
        Rules are consumed in the order they were added.
        """
        with self._lock:
            self._faults.append(_Fault(status, count, path_contains, method))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def head(self, repo_id: str, repo_type: str = "model", branch: str = "main") -> str:
        """The commit sha a branch points at."""
        with self._lock:
            return self._repos[(repo_type, repo_id)].branches[branch]

    # -- request handling ----------------------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> int | str | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault.action
        return None

    def _record(self, method: str, path: str, status: int | str) -> None:
        with self._lock:
            self._log.append(LoggedRequest(method, path, status))

    def handle(self, request: Request) -> Response:
        try:
            with self._lock:
                request.access = self._access(request.headers)
                return self._route(request)
        except HubError as err:
            return error_response(err)
        except (json.JSONDecodeError, KeyError) as exc:  # a body the clients would never send
            return error_response(HubError(400, f"malformed request: {exc!r}"))
        except Exception as exc:  # a bug here: 501 is an error the clients do not retry
            traceback.print_exc(file=sys.stderr)
            return error_response(HubError(501, f"fake hub internal error: {exc!r}"))

    def _access(self, headers: dict[str, str]) -> str:
        auth = headers.get("authorization", "")
        if not auth:
            return "anonymous"
        token = auth.removeprefix("Bearer ").strip()
        if token == self.token:
            return "write"
        if token == self.read_token:
            return "read"
        raise HubError(401, "Invalid credentials in Authorization header")

    def _route(self, req: Request) -> Response:
        segments = req.path.strip("/").split("/")
        if segments[0] == "api":
            return self._route_api(req, segments[1:])
        return self._route_git(req, segments)

    def _route_api(self, req: Request, segments: list[str]) -> Response:
        simple = API_ROUTES.get((req.method, "/".join(segments)))
        if simple:
            return simple(self, req)
        if len(segments) >= 3 and segments[0] in REPO_TYPES:
            repo_type, rest = REPO_TYPES[segments[0]], segments[3:]
            repo_id = f"{unquote(segments[1])}/{unquote(segments[2])}"
            if rest and rest[0].startswith("xet-"):
                raise HubError(501, NO_XET)
            route = REPO_ROUTES.get((req.method, rest[0] if rest else "info"))
            if route:
                handler, write = route
                repo = self._repo(req, repo_type, repo_id, write)
                return handler(self, req, repo, [unquote(s) for s in rest[1:]])
        raise HubError(404, f"the fake Hub has no route {req.method} {req.path}")

    def _route_git(self, req: Request, segments: list[str]) -> Response:
        repo_type = "model"
        if segments[0] in ("datasets", "spaces") and len(segments) > 3:
            repo_type, segments = REPO_TYPES[segments[0]], segments[1:]
        if len(segments) >= 5 and segments[2] == "resolve" and req.method in ("GET", "HEAD"):
            repo = self._repo(req, repo_type, f"{segments[0]}/{segments[1]}")
            path = "/".join(unquote(s) for s in segments[4:])
            return self._resolve_file(req, repo, unquote(segments[3]), path)
        if len(segments) == 6 and segments[2:5] == ["info", "lfs", "objects"]:
            repo_id = f"{segments[0]}/{segments[1].removesuffix('.git')}"
            if req.method == "POST" and segments[5] == "batch":
                return self._lfs_batch(req, self._repo(req, repo_type, repo_id, write=True))
            if req.method == "PUT" and (repo_type, repo_id) in self._repos:  # a "signed" URL
                return self._lfs_put(req, self._repos[(repo_type, repo_id)], segments[5])
        raise HubError(404, f"the fake Hub has no route {req.method} {req.path}")

    def _require_write(self, req: Request) -> None:
        if req.access == "anonymous":
            raise HubError(401, "You must be authenticated to write to the Hub")
        if req.access == "read":
            raise HubError(403, "You don't have the rights to write here: your token is read-only")

    def _repo(self, req: Request, repo_type: str, repo_id: str, write: bool = False) -> Repo:
        if write:
            self._require_write(req)
        repo = self._repos.get((repo_type, repo_id))
        if repo is None or (repo.private and req.access == "anonymous"):
            status = 401 if req.access == "anonymous" else 404
            raise HubError(status, "Repository not found", "RepoNotFound")
        return repo

    # -- storage -------------------------------------------------------------------------------

    def _store(self, data: bytes, lfs: bool) -> Blob:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.root / "objects" / sha256
        if not path.exists():
            tmp = path.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_bytes(data)
            tmp.replace(path)
        oid = git_blob_sha(lfs_pointer(sha256, len(data)) if lfs else data)
        return Blob(oid, sha256, len(data), lfs)

    def _read(self, blob: Blob) -> bytes:
        return (self.root / "objects" / blob.sha256).read_bytes()

    def _new_commit(self, repo: Repo, branch: str, tree: dict, title: str, message: str) -> Commit:
        self._commit_count += 1
        parent = repo.branches.get(branch)
        content = [parent, sorted((p, b.oid) for p, b in tree.items()), title, message]
        seed = json.dumps([*content, self._commit_count, time.time()]).encode()
        commit = Commit(hashlib.sha1(seed).hexdigest(), parent, title, message, time.time(), tree)
        repo.commits[commit.sha] = commit
        repo.branches[branch] = commit.sha
        return commit

    def _card(self, commit: Commit) -> dict:
        readme = commit.tree.get("README.md")
        return card_data(self._read(readme).decode(errors="replace")) if readme else {}

    # -- account and service routes ------------------------------------------------------------

    def _whoami(self, req: Request) -> Response:
        if req.access == "anonymous":
            raise HubError(401, "Invalid credentials in Authorization header")
        orgs = [{"type": "org", "name": org, "roleInOrg": "admin"} for org in self.orgs]
        token = {"displayName": f"{req.access}-token", "role": req.access}
        user = {"type": "user", "name": self.user, "fullname": self.user.title(), "orgs": orgs}
        return json_response(user | {"auth": {"type": "access_token", "accessToken": token}})

    def _harnesses(self, req: Request) -> Response:
        return json_response({"standardEnvVars": [], "harnesses": {}})

    def _validate_yaml(self, req: Request) -> Response:
        errors = yaml_errors(req.json().get("content", ""))
        return json_response({"errors": errors, "warnings": []}, 400 if errors else 200)

    # -- repos ---------------------------------------------------------------------------------

    def _create_repo(self, req: Request) -> Response:
        self._require_write(req)
        body = req.json()
        repo_type = body.get("type") or "model"
        if repo_type not in URL_PREFIX or not body.get("name"):
            raise HubError(400, f"bad repo type {repo_type!r} or missing name")
        repo_id = f"{body.get('organization') or self.user}/{body['name']}"
        url = f"{self.url}/{URL_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self._repos:
            raise HubError(409, f"You already created this {repo_type} repo", url=url)
        if repo_type == "space" and not body.get("sdk"):
            raise HubError(400, "a Space needs an sdk")
        private = body.get("visibility") == "private" or body.get("private") is True
        repo = Repo(repo_type, repo_id, private, body.get("sdk"))
        gitattributes = self._store(GITATTRIBUTES.encode(), lfs=False)
        self._new_commit(repo, "main", {".gitattributes": gitattributes}, "initial commit", "")
        self._repos[(repo_type, repo_id)] = repo
        return json_response({"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self, req: Request) -> Response:
        body = req.json()
        repo_id = f"{body.get('organization') or self.user}/{body.get('name')}"
        repo = self._repo(req, body.get("type") or "model", repo_id, write=True)
        del self._repos[(repo.type, repo.id)]
        return json_response({})

    def _info(self, req: Request, repo: Repo, args: list[str]) -> Response:
        commit = repo.resolve("/".join(args) or "main")
        card = self._card(commit)
        info = {"id": repo.id, "author": repo.id.split("/")[0], "sha": commit.sha}
        info |= {"lastModified": iso(commit.date), "createdAt": iso(repo.created)}
        info |= {"private": repo.private, "gated": False, "tags": card_tags(card)}
        info["siblings"] = [blob.sibling(path) for path, blob in sorted(commit.tree.items())]
        if card:
            info["cardData"] = card
        if repo.type == "model":
            info |= {key: card.get(key) for key in ("library_name", "pipeline_tag")}
        if repo.type == "space":
            info["sdk"] = card.get("sdk") or repo.sdk
            info["runtime"] = {"stage": "BUILDING", "hardware": {"current": None}}
        return json_response(info)

    # -- listing -------------------------------------------------------------------------------

    def _tree(self, req: Request, repo: Repo, args: list[str]) -> Response:
        commit = repo.resolve(args[0] if args else "main")
        base = "/".join(args[1:]).strip("/")
        recursive = req.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries = tree_listing(commit.tree, base, recursive)
        if base and not entries:
            raise HubError(404, f"{base} does not exist", "EntryNotFound", commit=commit.sha)
        return json_response(entries)

    def _paths_info(self, req: Request, repo: Repo, args: list[str]) -> Response:
        commit = repo.resolve(args[0] if args else "main")
        entries = []
        for path in parse_qs(req.body.decode()).get("paths", []):
            path = path.strip("/")
            if path in commit.tree:
                entries.append(commit.tree[path].tree_entry(path))
            elif any(name.startswith(path + "/") for name in commit.tree):
                entries.append(folder_entry(path, commit.tree))
        return json_response(entries)

    def _refs(self, req: Request, repo: Repo, args: list[str]) -> Response:
        def refs(kind: str, table: dict[str, str]) -> list[dict]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": table[n]} for n in table]

        refs = {"branches": refs("heads", repo.branches), "tags": refs("tags", repo.tags)}
        return json_response(refs | {"converts": [], "pullRequests": []})

    def _commits(self, req: Request, repo: Repo, args: list[str]) -> Response:
        commit: Commit | None = repo.resolve("/".join(args) or "main")
        history = []
        while commit is not None:
            history.append(commit.to_json(self.user))
            commit = repo.commits.get(commit.parent) if commit.parent else None
        return json_response(history)

    # -- refs ----------------------------------------------------------------------------------

    def _branch(self, req: Request, repo: Repo, args: list[str]) -> Response:
        name = "/".join(args)
        if req.method == "DELETE":
            if name not in repo.branches:
                raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            if name == "main":
                raise HubError(403, "Cannot delete the default branch")
            del repo.branches[name]
        else:
            if name in repo.branches:
                raise HubError(409, f"Reference refs/heads/{name} already exists")
            repo.branches[name] = repo.resolve(req.json().get("startingPoint") or "main").sha
        return json_response({})

    def _tag(self, req: Request, repo: Repo, args: list[str]) -> Response:
        name = "/".join(args)
        if req.method == "DELETE":
            if repo.tags.pop(name, None) is None:
                raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            return json_response({})
        tag = req.json().get("tag", "")
        commit = repo.resolve(name or "main")
        if not tag or tag in repo.tags:
            raise HubError(409 if tag else 400, f"Tag {tag!r} already exists or is empty")
        repo.tags[tag] = commit.sha
        return json_response({})

    # -- uploads and commits -------------------------------------------------------------------

    def _preupload(self, req: Request, repo: Repo, args: list[str]) -> Response:
        commit = repo.resolve(args[0] if args else "main")
        answers = []
        for item in req.json().get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            lfs = needs_lfs(item["path"], int(item.get("size", 0)), sample)
            known = commit.tree.get(item["path"])
            oid = (known.sha256 if known.lfs else known.oid) if known else None
            mode = "lfs" if lfs else "regular"
            answers.append(
                {"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid}
            )
        return json_response({"files": answers, "commitOid": commit.sha})

    def _lfs_batch(self, req: Request, repo: Repo) -> Response:
        body = req.json()
        if body.get("operation") != "upload":
            raise HubError(
                400, "the fake Hub only takes LFS uploads (downloads go through resolve)"
            )
        objects = []
        for obj in body.get("objects", []):
            if not HEX64.match(str(obj.get("oid"))):
                raise HubError(400, f"bad LFS oid {obj.get('oid')!r}")
            answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in repo.lfs:
                href = f"{repo.url(self.url)}.git/info/lfs/objects/{obj['oid']}"
                answer["actions"] = {"upload": {"href": href, "expires_in": 3600}}
            objects.append(answer)
        return json_response(
            {"transfer": "basic", "objects": objects}, content_type="application/vnd.git-lfs+json"
        )

    def _lfs_put(self, req: Request, repo: Repo, oid: str) -> Response:
        if hashlib.sha256(req.body).hexdigest() != oid:
            raise HubError(400, f"uploaded content does not hash to {oid}")
        self._store(req.body, lfs=True)
        repo.lfs.add(oid)
        return Response(200)

    def _commit(self, req: Request, repo: Repo, args: list[str]) -> Response:
        branch = "/".join(args) or "main"
        if req.query.get("create_pr"):
            raise HubError(400, "the fake Hub does not do pull requests")
        if branch not in repo.branches:
            raise HubError(
                404, f"Invalid rev id: {branch} (commits go to a branch)", "RevisionNotFound"
            )
        lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        head = repo.branches[branch]
        if header.get("parentCommit") not in (None, head):
            raise HubError(412, STALE_PARENT)
        tree = dict(repo.commits[head].tree)
        for line in lines:
            self._apply(repo, tree, line["key"], line["value"])
        summary, description = header.get("summary") or "", header.get("description") or ""
        commit = self._new_commit(repo, branch, tree, summary, description)
        commit_url = f"{repo.url(self.url)}/commit/{commit.sha}"
        return json_response({"success": True, "commitOid": commit.sha, "commitUrl": commit_url})

    def _apply(self, repo: Repo, tree: dict[str, Blob], key: str, value: dict) -> None:
        path = value.get("path", "")
        if key != "header" and (not path or path.startswith("/") or ".." in path.split("/")):
            raise HubError(400, f"bad path in commit: {path!r}")
        if key == "file":
            content = value["content"]
            data = (
                base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
            )
            tree[path] = self._store(data, lfs=False)
        elif key == "lfsFile":
            if value.get("oid") not in repo.lfs:
                raise HubError(400, f"LFS object {value.get('oid')} of {path} was never uploaded")
            size = (self.root / "objects" / value["oid"]).stat().st_size
            tree[path] = Blob(
                git_blob_sha(lfs_pointer(value["oid"], size)), value["oid"], size, True
            )
        elif key == "deletedFile":
            if tree.pop(path, None) is None:
                raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
        elif key == "deletedFolder":
            doomed = [name for name in tree if name.startswith(path.rstrip("/") + "/")]
            if not doomed:
                raise HubError(404, "A folder with this name doesn't exist", "EntryNotFound")
            for name in doomed:
                del tree[name]
        elif key != "header":
            raise HubError(400, f"the fake Hub does not know commit operation {key!r}")

    # -- downloads -----------------------------------------------------------------------------

    def _resolve_file(self, req: Request, repo: Repo, rev: str, path: str) -> Response:
        commit = repo.resolve(rev)
        blob = commit.tree.get(path)
        if blob is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", commit=commit.sha)
        data = self._read(blob)
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{blob.oid}"',
            "X-Repo-Commit": commit.sha,
        }
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(blob.size)})
        wanted = byte_range(req.headers.get("range"), len(data))
        if wanted is None:
            return Response(200, data, headers)
        start, end = wanted
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Response(206, data[start : end + 1], headers)


# ------------------------------------------------------------------------------------------------
# Pure helpers


def needs_lfs(path: str, size: int, sample: bytes) -> bool:
    """The Hub's choice: LFS for weights and data files, binary content and big files."""
    return path.endswith(LFS_SUFFIXES) or size >= LFS_THRESHOLD or b"\0" in sample


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`(start, end)` (inclusive) of a single `bytes=` range; raises a 416 when unsatisfiable."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header or "")
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    else:
        start, end = max(size - int(last), 0), size - 1
    if start > end or start >= size:
        raise HubError(416, f"range {header} is outside 0-{size - 1}")
    return start, end


def folder_entry(path: str, tree: dict[str, Blob]) -> dict:
    inside = sorted(
        f"{name} {blob.oid}" for name, blob in tree.items() if name.startswith(path + "/")
    )
    oid = hashlib.sha1("\n".join(inside).encode()).hexdigest()
    return {"type": "directory", "path": path, "oid": oid, "size": 0}


def tree_listing(tree: dict[str, Blob], base: str, recursive: bool) -> list[dict]:
    """The `/tree` answer: folders first, then files, under `base` (all levels if recursive)."""
    prefix = f"{base}/" if base else ""
    files, folders = [], set()
    for path, blob in sorted(tree.items()):
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        folders.update(prefix + "/".join(parts[:i]) for i in range(1, len(parts)))
        if recursive or len(parts) == 1:
            files.append(blob.tree_entry(path))
    if not recursive:
        folders = {f for f in folders if "/" not in f[len(prefix) :]}
    return [folder_entry(f, tree) for f in sorted(folders)] + files


def card_tags(card: dict) -> list[str]:
    """Repo tags as the Hub derives them from card metadata (a small subset)."""
    tags = list(card.get("tags") or [])
    for key in ("license", "language", "task_categories", "size_categories", "base_model"):
        values = card.get(key) or []
        tags += [f"{key}:{v}" for v in (values if isinstance(values, list) else [values])]
    if card.get("library_name"):
        tags.append(str(card["library_name"]))
    return tags


def yaml_errors(content: str) -> list[dict]:
    """What `/api/validate-yaml` objects to: unparsable YAML, a non-mapping, malformed `configs`."""
    match = YAML_BLOCK.match(content)
    if not match:
        return []
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        return [{"message": f"Invalid YAML in README.md: {err}"}]
    if data is None:
        return []
    if not isinstance(data, dict):
        return [{"message": "README.md metadata must be a YAML mapping"}]
    configs = data.get("configs", [])
    if not isinstance(configs, list) or not all(
        isinstance(c, dict) and c.get("config_name") for c in configs
    ):
        return [{"message": "configs must be a list of mappings, each with a config_name"}]
    if sum(bool(c.get("default")) for c in configs) > 1:
        return [{"message": "configs: at most one config can be the default"}]
    return []


def error_response(err: HubError) -> Response:
    headers = {"X-Error-Message": err.message.encode("ascii", "replace").decode()}
    if err.code:
        headers["X-Error-Code"] = err.code
    if err.commit:
        headers["X-Repo-Commit"] = err.commit
    if err.status == 429:
        headers["Retry-After"] = "1"
    return json_response({"error": err.message, **err.extra}, err.status, **headers)


API_ROUTES = {
    ("POST", "repos/create"): FakeHub._create_repo,
    ("DELETE", "repos/delete"): FakeHub._delete_repo,
    ("POST", "validate-yaml"): FakeHub._validate_yaml,
    ("GET", "whoami-v2"): FakeHub._whoami,
    ("GET", "agent-harnesses"): FakeHub._harnesses,
}

# (method, the path segment after `/api/{type}s/{namespace}/{name}`) -> (handler, needs write)
REPO_ROUTES = {
    ("GET", "info"): (FakeHub._info, False),
    ("GET", "revision"): (FakeHub._info, False),
    ("GET", "tree"): (FakeHub._tree, False),
    ("POST", "paths-info"): (FakeHub._paths_info, False),
    ("GET", "refs"): (FakeHub._refs, False),
    ("GET", "commits"): (FakeHub._commits, False),
    ("POST", "preupload"): (FakeHub._preupload, True),
    ("POST", "commit"): (FakeHub._commit, True),
    ("POST", "branch"): (FakeHub._branch, True),
    ("DELETE", "branch"): (FakeHub._branch, True),
    ("POST", "tag"): (FakeHub._tag, True),
    ("DELETE", "tag"): (FakeHub._tag, True),
}


# ------------------------------------------------------------------------------------------------
# HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    hub: FakeHub


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, format, *args) -> None:  # the request log replaces stderr noise
        pass

    def _serve(self) -> None:
        hub = self.server.hub
        body = self._read_body()
        url = urlsplit(self.path)
        fault = hub._take_fault(self.command, url.path)
        if fault == "drop":
            hub._record(self.command, url.path, "drop")
            self.close_connection = True
            return
        if isinstance(fault, int):
            response = error_response(HubError(fault, f"injected fault: HTTP {fault}"))
        else:
            headers = {k.lower(): v for k, v in self.headers.items()}
            query = parse_qs(url.query, keep_blank_values=True)
            response = hub.handle(Request(self.command, url.path, query, headers, body))
        hub._record(self.command, url.path, fault or response.status)
        if fault == "drop_after":
            self.close_connection = True
            return
        self._send(response)

    def _read_body(self) -> bytes:
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return b"".join(chunks)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)


# ------------------------------------------------------------------------------------------------
# Client side: keep huggingface_hub on loopback


class OffMachineRequestError(RuntimeError):
    """huggingface_hub tried to reach a host other than loopback during the tests."""


def refuse_off_machine(request) -> None:
    """An httpx request hook: raise on any host but loopback (the fake Hub's)."""
    if request.url.host not in LOOPBACK_HOSTS:
        raise OffMachineRequestError(f"tests must not leave this machine: {request.url}")


async def _refuse_off_machine_async(request) -> None:
    refuse_off_machine(request)


def install_loopback_guard() -> None:
    """Make huggingface_hub's shared HTTP clients refuse non-loopback hosts, keeping the
    library's own hooks (offline mode, request ids). Call it after the environment is set."""
    from huggingface_hub import set_async_client_factory, set_client_factory
    from huggingface_hub.utils import _http

    def client():
        session = _http.default_client_factory()
        session.event_hooks["request"].append(refuse_off_machine)
        return session

    def async_client():
        session = _http.default_async_client_factory()
        session.event_hooks["request"].append(_refuse_off_machine_async)
        return session

    set_client_factory(client)
    set_async_client_factory(async_client)
