"""A local publish killed at every file operation it performs, and at random times, leaves the
registry as it was or holding exactly the new commit; the next publish always succeeds.

Each publish runs in a child process (this file run as a script). An audit hook there sees every
file operation the publish performs inside the registry (opens for writing, mkdirs, symlinks,
renames and replaces, removals, copies): a first run lists them, then one run per operation
SIGKILLs the child right before it. The registry is then read as consumers read it: refs, tags
and history through the target, each ref's files through `snapshot_download` (offline, by repo
id) and its rows through `load_dataset`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from factory.hub.local import LocalRegistry

pytestmark = pytest.mark.slow  # starts servers or trains models

REPO = "me/crash"
ROWS = {
    "v1": {"a": [{"x": 1}], "b": [{"x": 2}]},
    "v2": {"a": [{"x": 1}], "b": [{"x": 3}, {"x": 5}], "c": [{"x": 4}]},
}
# what the registry already holds (folder, tag, message), then the publish that gets killed
SCENARIOS = {
    "first-commit": ([], ("v1", "t1", "one")),
    "next-commit": ([("v1", "t1", "one")], ("v2", "t2", "two")),
    "tag-only": ([("v1", None, "one")], ("v1", "t1", "one again")),
}
# the audit events of file operations that change something (os.rename: rename and replace)
MUTATIONS = {"open", "os.mkdir", "os.symlink", "os.rename", "os.remove", "os.rmdir", "os.link"}
MUTATIONS |= {"os.truncate", "os.chmod", "shutil.copyfile", "shutil.copytree", "shutil.rmtree"}


# --- the child --------------------------------------------------------------------------------


def _written(event: str, args: tuple, root: str) -> str | None:
    """The registry path a mutating file operation touches, or None for anything else."""
    if event not in MUTATIONS:
        return None
    if event == "open":
        _, mode, flags = args
        if not (set(mode or "") & set("wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
            return None
    path = args[1] if event in ("os.symlink", "shutil.copyfile", "shutil.copytree") else args[0]
    if isinstance(path, int):
        return f"<fd {path}>"  # e.g. the lock file's fchmod: this child opens nothing else
    path = os.fsdecode(path)
    return path if not os.path.isabs(path) or path.startswith(root) else None


def child(root: str, folder: str, tag: str, message: str, kill_at: int) -> None:
    """Publish `folder`; SIGKILL this process right before its operation number `kill_at`
    (never when negative). Prints `ready` before publishing; after, the operations and the
    seconds the publish took."""
    import huggingface_hub.file_download  # noqa: F401 (imported before the hook is installed)
    import huggingface_hub.utils  # noqa: F401

    ops: list[str] = []

    def hook(event: str, args: tuple) -> None:
        path = _written(event, args, root)
        if path is None:
            return
        if len(ops) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        ops.append(f"{event} {os.path.relpath(path, root) if path.startswith('/') else path}")

    print("ready", flush=True)
    sys.addaudithook(hook)
    start = time.perf_counter()
    LocalRegistry(Path(root)).publish(
        Path(folder), REPO, "dataset", tag=tag or None, message=message
    )
    print(json.dumps({"ops": ops, "seconds": time.perf_counter() - start}), flush=True)


def start_child(root: Path, folder: Path, tag: str | None, message: str, kill_at: int = -1):
    args = [__file__, str(root), str(folder), tag or "", message, str(kill_at)]
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_child(root: Path, folder: Path, tag: str | None, message: str, kill_at: int = -1):
    process = start_child(root, folder, tag, message, kill_at)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


# --- reading the registry as consumers do -----------------------------------------------------


def view(root: Path) -> dict:
    """What the registry shows: each ref's commit and files (resolved by repo id through
    `snapshot_download`, offline) and the history, dates aside."""
    from huggingface_hub import snapshot_download

    registry = LocalRegistry(root)
    if not (registry.repo_dir(REPO, "dataset") / "refs" / "main").is_file():
        return {"refs": {}, "files": {}, "history": []}
    refs = {
        name: registry.pull(REPO, name, "dataset").commit
        for name in ["main", *registry.tags(REPO, "dataset")]
    }
    files = {}
    for name, commit in refs.items():
        snapshot = Path(
            snapshot_download(
                REPO, repo_type="dataset", revision=name, cache_dir=root, local_files_only=True
            )
        )
        assert snapshot.name == commit, f"{name}: the stock client and the target agree"
        files[name] = _files(snapshot)
    history = [
        [h["commit"], h["parent"], h["tree"], h["message"]]
        for h in registry.history(REPO, "dataset")
    ]
    return {"refs": refs, "files": files, "history": history}


def rows(root: Path, revision: str, cache: Path) -> list[dict]:
    """Config `b` of `revision`, through `load_dataset` on the snapshot the repo id resolves to."""
    from datasets import load_dataset
    from huggingface_hub import snapshot_download

    path = snapshot_download(
        REPO, repo_type="dataset", revision=revision, cache_dir=root, local_files_only=True
    )
    return load_dataset(path, "b", split="train", cache_dir=str(cache)).to_list()


def assert_no_leftovers(root: Path) -> None:
    """Only what the current state reaches: no temporary entry, no stray snapshot or blob."""
    repo = LocalRegistry(root).repo_dir(REPO, "dataset")
    assert not [p for p in repo.rglob("*") if p.name.endswith(".tmp")]
    live = {h["commit"] for h in LocalRegistry(root).history(REPO, "dataset")}
    assert {p.name for p in (repo / "snapshots").iterdir()} == live
    links = [p for p in (repo / "snapshots").rglob("*") if p.is_symlink()]
    assert {p.name for p in (repo / "blobs").iterdir()} == {
        Path(os.readlink(p)).name for p in links
    }
    assert len(list((repo / ".state").iterdir())) <= 2, "the current state and the one before"


# --- the tests --------------------------------------------------------------------------------


@dataclass
class Case:
    base: Path  # the registry before the publish
    folders: dict[str, Path]
    folder: Path  # what the publish takes
    tag: str | None
    message: str
    ops: list[str]  # the publish's file operations, in order
    seconds: float  # how long the whole publish took
    before: dict
    after: dict


def prepare(tmp_path: Path, scenario: str, padding: int = 0) -> Case:
    """The registry before the publish, and the publish run once to completion."""
    from test_registry import dataset_folder

    folders = {name: dataset_folder(tmp_path / name, rows) for name, rows in ROWS.items()}
    for i in range(padding):  # bigger files, so that a random kill lands anywhere
        (folders["v2"] / "extra").mkdir(exist_ok=True)
        (folders["v2"] / "extra" / f"{i}.bin").write_bytes(random.Random(i).randbytes(1 << 18))
    earlier, (name, tag, message) = SCENARIOS[scenario]
    base = tmp_path / "base"
    base.mkdir()
    for folder, earlier_tag, earlier_message in earlier:
        LocalRegistry(base).publish(
            folders[folder], REPO, "dataset", tag=earlier_tag, message=earlier_message
        )
    reference = copy(base, tmp_path / "reference")
    code, out, err = run_child(reference, folders[name], tag, message)
    assert code == 0, err
    done = json.loads(out.splitlines()[-1])
    return Case(
        base,
        folders,
        folders[name],
        tag,
        message,
        done["ops"],
        done["seconds"],
        view(base),
        view(reference),
    )


def copy(base: Path, root: Path) -> Path:
    shutil.copytree(base, root, symlinks=True)
    return root


def check_killed(root: Path, case: Case, cache: Path, what: str) -> bool:
    """The registry after a kill shows the old state or exactly the new one, and whatever it
    shows loads; then the next publish succeeds and ends in the expected state. Returns
    whether the kill came after the commit."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    seen = view(root)
    assert seen in (case.before, case.after), f"{what}: a mixed state {seen}"
    revision = case.tag if case.tag in seen["refs"] else "main"
    if seen["refs"]:
        name = next(n for n, f in case.folders.items() if _files(f) == seen["files"][revision])
        assert rows(root, revision, cache) == ROWS[name]["b"], what
    else:
        with pytest.raises(LocalEntryNotFoundError):
            snapshot_download(REPO, repo_type="dataset", cache_dir=root, local_files_only=True)
    again = LocalRegistry(root).publish(
        case.folder, REPO, "dataset", tag=case.tag, message=case.message
    )
    assert view(root) == case.after, f"{what}: the next publish"
    committed = seen == case.after
    assert again.created == (not committed and case.after["history"] != case.before["history"])
    assert_no_leftovers(root)
    return committed


def _files(folder: Path) -> dict[str, str]:
    from huggingface_hub.utils.sha import git_hash

    return {
        p.relative_to(folder).as_posix(): git_hash(p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_publish_killed_before_any_of_its_file_operations(scenario, tmp_path):
    case = prepare(tmp_path, scenario)
    assert case.after != case.before and len(case.ops) >= 10, case.ops
    print(f"{scenario}: {len(case.ops)} file operations")
    assert (
        case.ops[-1]
        == f"os.rename {LocalRegistry(case.base).repo_dir(REPO, 'dataset').name}/refs.tmp"
    )
    for i, op in enumerate(case.ops):
        root = copy(case.base, tmp_path / f"killed-{i}")
        code, _, err = run_child(root, case.folder, case.tag, case.message, kill_at=i)
        assert code == -signal.SIGKILL, f"{op}: {err}"
        committed = check_killed(root, case, tmp_path / f"cache-{i}", f"killed before {op}")
        assert not committed, "the last operation, the `refs` switch, is the commit"


def test_a_publish_killed_at_random_times(tmp_path):
    case = prepare(tmp_path, "next-commit", padding=8)
    rng, committed = random.Random(14), []
    for trial in range(20):
        root = copy(case.base, tmp_path / f"trial-{trial}")
        process = start_child(root, case.folder, case.tag, case.message)
        assert process.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0, case.seconds))
        process.kill()
        process.communicate(timeout=60)
        what = f"trial {trial} (exit {process.returncode})"
        committed.append(check_killed(root, case, tmp_path / f"cache-{trial}", what))
    print(f"{committed.count(False)} kills left the old state, {committed.count(True)} the new")


def test_concurrent_publishes_take_turns(tmp_path):
    case = prepare(tmp_path, "first-commit")
    root, names = tmp_path / "shared", ["v1", "v2", "v1", "v2"]
    children = [
        start_child(root, case.folders[name], f"tag-{i}", f"publish {i}")
        for i, name in enumerate(names)
    ]
    for process in children:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    history = LocalRegistry(root).history(REPO, "dataset")
    assert [h["parent"] for h in history] == [None] + [h["commit"] for h in history[:-1]]
    seen = view(root)
    for i, name in enumerate(names):
        assert seen["files"][f"tag-{i}"] == _files(case.folders[name])
    assert_no_leftovers(root)


if __name__ == "__main__":
    child(*sys.argv[1:5], int(sys.argv[5]))
