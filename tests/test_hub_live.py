"""Opt-in: the `hf` target against the real Hugging Face Hub.

Skipped unless `COT_FACTORY_LIVE_HF_TOKEN` (a write token) and `COT_FACTORY_LIVE_NAMESPACE` (a
scratch user or org it may write to) are set and huggingface.co answers. It runs the CLI in a
subprocess with the real endpoint, since this test session points `HF_ENDPOINT` at the fake.

What the fake Hub cannot prove and this does: uploads over Xet (the real default), the Hub's own
YAML validation of our cards, real permissions and private repos, and the real rate limits.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import pytest
import yaml
from test_build import synthetic_recipe

TOKEN = os.environ.get("COT_FACTORY_LIVE_HF_TOKEN")
NAMESPACE = os.environ.get("COT_FACTORY_LIVE_NAMESPACE")


def _reachable() -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=5).close()
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not (TOKEN and NAMESPACE) or not _reachable(),
    reason="live Hub test: set COT_FACTORY_LIVE_HF_TOKEN and COT_FACTORY_LIVE_NAMESPACE, "
    "and have network access to huggingface.co",
)


def test_publish_pull_and_load_on_the_real_hub(tmp_path):
    repo_id = f"{NAMESPACE}/cot-factory-live-{uuid.uuid4().hex[:8]}"
    path = synthetic_recipe(tmp_path)
    recipe = yaml.safe_load(path.read_text())
    recipe["dataset"].update(repo_id=repo_id, private=True)
    path.write_text(yaml.safe_dump(recipe))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf-home"))

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "factory.cli", *args, "--home", str(tmp_path / "home")]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)

    try:
        built = cli("build", str(path))
        assert built.returncode == 0, built.stderr
        first = cli("publish", str(path), "--target", "hf")
        assert first.returncode == 0 and "(new commit)" in first.stdout, first.stderr
        again = cli("publish", str(path), "--target", "hf")
        assert "unchanged, no new commit" in again.stdout, again.stderr
        pulled = cli("pull", repo_id, "--target", "hf", "--to", str(tmp_path / "copy"))
        assert pulled.returncode == 0, pulled.stderr
        assert (tmp_path / "copy" / "answer-only").is_dir()
    finally:  # in a subprocess too: this process only lets huggingface_hub reach loopback
        cleanup = (
            "from huggingface_hub import HfApi; "
            f"HfApi().delete_repo({repo_id!r}, repo_type='dataset', missing_ok=True)"
        )
        subprocess.run([sys.executable, "-c", cleanup], env=env, timeout=120)
