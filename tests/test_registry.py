"""The local registry: Hub-like layout, content-addressed commits, tags, revisions."""

from __future__ import annotations

import json

import pytest

from factory.hub import HubError, git_blob_sha
from factory.registry import LocalRegistry, tree_sha


def folder(tmp_path, name: str, files: dict[str, str]):
    root = tmp_path / name
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def test_git_blob_sha_matches_git():
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_sha(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_tree_sha_tracks_content_and_paths(tmp_path):
    a = folder(tmp_path, "a", {"README.md": "x", "cfg/train.parquet": "1"})
    b = folder(tmp_path, "b", {"README.md": "x", "cfg/train.parquet": "1"})
    c = folder(tmp_path, "c", {"README.md": "x", "cfg/test.parquet": "1"})
    assert tree_sha(a) == tree_sha(b) != tree_sha(c)


def test_publish_versions_tags_and_resolves(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    v1 = folder(tmp_path, "v1", {"README.md": "first", "data/train.txt": "a"})
    v2 = folder(tmp_path, "v2", {"README.md": "second", "data/train.txt": "b"})

    first = registry.publish(v1, "me/ds", "dataset", tag="recipe-aaa", message="one")
    same = registry.publish(v1, "me/ds", "dataset", tag="recipe-aaa", message="again")
    second = registry.publish(v2, "me/ds", "dataset", tag="recipe-bbb", message="two")

    assert first.created and not same.created and same.commit == first.commit
    assert second.created and second.commit != first.commit
    assert (first.path / "README.md").read_text() == "first"
    assert (second.path / "data/train.txt").read_text() == "b"
    assert registry.pull("me/ds").commit == second.commit
    assert registry.pull("me/ds", "recipe-aaa").path == first.path
    assert registry.pull("me/ds", first.commit[:8]).commit == first.commit
    assert registry.tags("me/ds", "dataset") == ["recipe-aaa", "recipe-bbb"]
    history = registry.history("me/ds", "dataset")
    assert [h["commit"] for h in history] == [first.commit, second.commit]
    assert history[1]["parent"] == first.commit and history[1]["message"] == "two"
    assert registry.find_type("me/ds") == "dataset"


def test_resolve_errors_name_the_repo_and_revision(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    with pytest.raises(HubError, match="no repo 'me/none'"):
        registry.pull("me/none")
    registry.publish(folder(tmp_path, "f", {"a": "1"}), "me/ds", "dataset", tag="t1", message="m")
    with pytest.raises(HubError, match=r"has no revision 'v9' \(tags: t1\)"):
        registry.pull("me/ds", "v9")
    registry.publish(folder(tmp_path, "g", {"a": "2"}), "me/ds", "model", tag=None, message="m")
    with pytest.raises(HubError, match="names a dataset and a model: pass --repo-type"):
        registry.pull("me/ds")
    assert registry.pull("me/ds", repo_type="model").repo_type == "model"


def test_snapshot_is_immutable_after_later_publishes(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    first = registry.publish(
        folder(tmp_path, "a", {"f": "1"}), "me/m", "model", tag=None, message=""
    )
    registry.publish(folder(tmp_path, "b", {"f": "2"}), "me/m", "model", tag=None, message="")
    assert (first.path / "f").read_text() == "1"
    assert not list(first.path.parent.glob("*.tmp")), "no half-written snapshot is left"
    refs = first.path.parents[1] / "refs"
    assert (refs / "main").read_text().strip() != first.commit
    assert json.loads((first.path.parents[1] / "commits.jsonl").read_text().splitlines()[0])
