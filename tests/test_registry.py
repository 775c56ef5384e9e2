"""The local target: the Hugging Face cache layout, deterministic commits, tags that never move,
revisions, and stock clients resolving published repos by id offline."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import scan_cache_dir, snapshot_download

from factory.hub import HubError, make_target
from factory.hub.local import LocalRegistry

CARD = """---
configs:
{configs}
---
# A tiny dataset
"""


def folder(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def dataset_folder(root: Path, rows: dict[str, list[dict]], repeat: int = 1) -> Path:
    """A dataset folder in the Hub layout: `{config}/train-*.parquet` and a card declaring each
    config (the first is the default); `repeat` makes each shard that many times bigger."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    entries = []
    for i, (config, config_rows) in enumerate(rows.items()):
        (root / config).mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(config_rows * repeat)
        pq.write_table(table, root / config / "train-00000-of-00001.parquet")
        entries.append(
            f"- config_name: {config}\n  data_files:\n  - split: train\n"
            f"    path: {config}/train-*" + ("\n  default: true" if i == 0 else "")
        )
    (root / "README.md").write_text(CARD.format(configs="\n".join(entries)))
    return root


def test_publish_versions_tags_and_resolves(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    v1 = folder(tmp_path / "v1", {"README.md": "first", "data/train.txt": "a"})
    v2 = folder(tmp_path / "v2", {"README.md": "second", "data/train.txt": "b"})

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
    assert history[0]["parent"] is None
    assert history[1]["parent"] == first.commit and history[1]["message"] == "two"
    assert registry.find_type("me/ds") == "dataset"
    pulled = registry.pull("me/ds", "recipe-aaa", to=tmp_path / "out")
    assert (tmp_path / "out" / "data/train.txt").read_text() == "a" and pulled.path.is_dir()
    assert not (tmp_path / "out" / "data/train.txt").is_symlink()


def test_commit_ids_hash_content_parent_and_message(tmp_path):
    files = {"README.md": "x", "cfg/train.txt": "1"}
    a = LocalRegistry(tmp_path / "a").publish(
        folder(tmp_path / "f1", files), "me/m", "model", tag=None, message="m"
    )
    b = LocalRegistry(tmp_path / "b").publish(
        folder(tmp_path / "f2", files), "me/m", "model", tag=None, message="m"
    )
    other_message = LocalRegistry(tmp_path / "c").publish(
        folder(tmp_path / "f3", files), "me/m", "model", tag=None, message="n"
    )
    other_path = LocalRegistry(tmp_path / "d").publish(
        folder(tmp_path / "f4", {"README.md": "x", "cfg/test.txt": "1"}),
        "me/m",
        "model",
        tag=None,
        message="m",
    )
    assert a.commit == b.commit, "the same folder, parent and message: the same commit anywhere"
    assert len({a.commit, other_message.commit, other_path.commit}) == 3


def test_hugging_face_cache_layout(tmp_path):
    home = tmp_path / "home"
    registry = make_target("local", home)
    files = {"README.md": "same", "copy.md": "same", "cfg/train.txt": "t"}
    first = registry.publish(
        folder(tmp_path / "a", files), "me/ds", "dataset", tag="t1", message=""
    )
    second = registry.publish(
        folder(tmp_path / "b", {**files, "cfg/train.txt": "u"}),
        "me/ds",
        "dataset",
        tag=None,
        message="",
    )
    repo = home / "registry" / "datasets--me--ds"
    assert first.path == repo / "snapshots" / first.commit
    assert (repo / "refs" / "main").read_text() == second.commit
    assert (repo / "refs" / "t1").read_text() == first.commit
    link = first.path / "cfg" / "train.txt"
    assert link.is_symlink() and os.readlink(link) == os.path.join(
        "..", "..", "..", "blobs", _blob(b"t")
    )
    assert len(list((repo / "blobs").iterdir())) == 3, "one blob per content, shared by commits"
    assert (first.path / "cfg/train.txt").read_text() == "t", "a snapshot never changes"
    (cached,) = scan_cache_dir(home / "registry").repos
    assert cached.repo_id == "me/ds" and cached.repo_type == "dataset"
    assert {r.commit_hash: set(r.refs) for r in cached.revisions} == {
        first.commit: {"t1"},
        second.commit: {"main"},
    }


def _blob(data: bytes) -> str:
    from huggingface_hub.utils.sha import git_hash

    return git_hash(data)


def test_tags_never_move(tmp_path, caplog):
    registry = LocalRegistry(tmp_path / "registry")
    v1 = folder(tmp_path / "v1", {"f": "1"})
    v2 = folder(tmp_path / "v2", {"f": "2"})
    v3 = folder(tmp_path / "v3", {"f": "3"})
    first = registry.publish(v1, "me/m", "model", tag="t1", message="one")
    second = registry.publish(v2, "me/m", "model", tag="t2", message="two")

    back = registry.publish(v1, "me/m", "model", tag="t1", message="one again")
    assert back.commit == first.commit and not back.created, "the tag already holds the folder"
    assert registry.pull("me/m").commit == second.commit, "main stays where it was"

    caplog.set_level(logging.WARNING)
    third = registry.publish(v3, "me/m", "model", tag="t1", message="three")
    assert third.created and registry.pull("me/m").commit == third.commit
    assert registry.pull("me/m", "t1").commit == first.commit
    assert "tag t1 of me/m stays on" in caplog.text
    assert len(registry.history("me/m", "model")) == 3

    untagged = registry.publish(v2, "me/m", "model", tag=None, message="four")
    assert untagged.created and registry.tags("me/m", "model") == ["t1", "t2"]
    for bad in ("main", "../x", "a//b"):
        with pytest.raises(HubError, match="cannot be a tag"):
            registry.publish(v1, "me/m", "model", tag=bad, message="")


def test_a_torn_history_line_never_breaks_a_publish(tmp_path, caplog):
    registry = LocalRegistry(tmp_path / "registry")
    first = registry.publish(
        folder(tmp_path / "a", {"f": "1"}), "me/m", "model", tag="t1", message=""
    )
    history = (first.path.parents[1] / "refs").resolve().parent / "commits.jsonl"
    history.write_text(history.read_text() + '{"commit": "0123')  # a write cut short
    caplog.set_level(logging.WARNING)
    second = registry.publish(
        folder(tmp_path / "b", {"f": "2"}), "me/m", "model", tag="t2", message=""
    )
    assert "skipping a torn line" in caplog.text
    assert [h["commit"] for h in registry.history("me/m", "model")] == [first.commit, second.commit]
    assert (registry.pull("me/m", "t1").path / "f").read_text() == "1"


def test_resolve_errors_name_the_repo_and_revision(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    with pytest.raises(HubError, match="no repo 'me/none'"):
        registry.pull("me/none")
    registry.publish(folder(tmp_path / "f", {"a": "1"}), "me/ds", "dataset", tag="t1", message="m")
    with pytest.raises(HubError, match=r"has no revision 'v9' \(tags: t1\)"):
        registry.pull("me/ds", "v9")
    registry.publish(folder(tmp_path / "g", {"a": "2"}), "me/ds", "model", tag=None, message="m")
    with pytest.raises(HubError, match="names a dataset and a model: pass --repo-type"):
        registry.pull("me/ds")
    assert registry.pull("me/ds", repo_type="model").repo_type == "model"
    with pytest.raises(HubError, match="nothing to publish"):
        registry.publish(tmp_path / "absent", "me/ds", "dataset", tag=None, message="m")
    with pytest.raises(HubError, match="not a repo id"):
        registry.publish(tmp_path / "f", "me/../x", "dataset", tag=None, message="m")
    with pytest.raises(HubError, match="unknown target 'ftp'"):
        make_target("ftp", tmp_path)


STOCK_CLIENTS = """
import json, sys
from datasets import load_dataset
from huggingface_hub import snapshot_download
from peft import PeftModel
from transformers import AutoModelForCausalLM

registry, base, tag = sys.argv[1:]
path = snapshot_download("me/tiny-ds", repo_type="dataset", revision=tag, cache_dir=registry)
rows = load_dataset(path, "cfg-b", split="train").to_dict()["x"]
model = PeftModel.from_pretrained(
    AutoModelForCausalLM.from_pretrained(base), "me/tiny-adapter", revision=tag, cache_dir=registry
)
lora = sum("lora_B" in name for name, _ in model.named_parameters())
print(json.dumps({"path": path, "rows": rows, "lora": lora}))
"""


def test_stock_clients_resolve_published_repos_by_id_offline(tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    home = tmp_path / "home"
    registry = make_target("local", home)
    data = dataset_folder(tmp_path / "ds", {"cfg-a": [{"x": 1}], "cfg-b": [{"x": 10}, {"x": 20}]})
    adapter = tmp_path / "adapter"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(adapter)
    published = registry.publish(data, "me/tiny-ds", "dataset", tag="v1", message="data")
    registry.publish(adapter, "me/tiny-adapter", "model", tag="v1", message="adapter")
    registry.publish(
        folder(tmp_path / "later", {"README.md": "x"}),
        "me/tiny-ds",
        "dataset",
        tag=None,
        message="",
    )

    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"))
    args = [sys.executable, "-c", STOCK_CLIENTS, str(home / "registry"), str(tiny_model_dir), "v1"]
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result == {"path": str(published.path), "rows": [10, 20], "lora": 2}

    env["HF_HUB_CACHE"] = str(home / "registry")
    by_env = (
        "from huggingface_hub import snapshot_download as s; "
        "print(s('me/tiny-ds', repo_type='dataset'))"
    )
    out = subprocess.run([sys.executable, "-c", by_env], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(registry.pull("me/tiny-ds").path)
    assert snapshot_download(
        "me/tiny-ds",
        repo_type="dataset",
        revision="v1",
        cache_dir=home / "registry",
        local_files_only=True,
    ) == str(published.path), "in this process too, without going offline"
