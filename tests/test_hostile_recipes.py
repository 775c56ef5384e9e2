"""Hostile recipes: every file of the corpus in tests/hostile_recipes/ is one clear error line
naming the file, the line and the key, given at once and within bounded memory, by
`load_recipe` and by the real CLI (`validate`: exit 2, `error: ...` on stderr)."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from factory.recipe import RecipeError, load_recipe

CORPUS = Path(__file__).parent / "hostile_recipes"
CASES = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))
BASE = (CORPUS / "base.txt").read_text(encoding="utf-8")
SECONDS_IN_PROCESS = 2.0
SECONDS_CLI = 5.0  # includes the interpreter's start and imports, about 0.3 s
MEMORY_CLI = 2 << 30  # address space of the CLI process; the alias bomb used to take 3 GB
THROUGH_CLI = [
    "billion-laughs.yaml",
    "billion-laughs-30.yaml",
    "alias-of-long-text.yaml",
    "deep-flow-lists.yaml",
    "description-50-mb.yaml",
    "binary-png.yaml",
    "utf-16-bom.yaml",
    "nul-byte.yaml",
    "comments-only.yaml",
    "sequence-key.yaml",
    "int-key.yaml",
    "duplicate-section.yaml",
    "samples-ten-million.yaml",
    "gym-unknown-dataset.yaml",
    "name-parent-dirs.yaml",
    "repo-id-parent.yaml",
    "repo-prefix-escape.yaml",
    "space-repo-escape.yaml",
    "own-api-key-env.yaml",
    "hf-token.yaml",
]


def recipe_file(name: str, tmp_path: Path) -> Path:
    """The case's file: in the corpus, or written here when it is too big to keep there."""
    size = CASES[name].get("generated")
    if size is None:
        return CORPUS / name
    path = tmp_path / name
    padding = size - len(BASE.encode()) - len("description: \n")
    path.write_text(BASE + "description: " + "x" * padding + "\n", encoding="utf-8")
    return path


def case_env(name: str) -> dict[str, str | None]:
    """The variables the case sets; None unsets one, {char: n} is the character n times."""
    env = CASES[name].get("env", {})
    return {
        k: "".join(c * n for c, n in v.items()) if isinstance(v, dict) else v
        for k, v in env.items()
    }


def assert_no_secret_shown(name: str, message: str) -> None:
    """The secret a case refuses to interpolate is set, and its value is not in the message."""
    if match := re.search(r"\$\{(\w+)\} holds a secret", CASES[name]["error"]):
        secret = case_env(name).get(match.group(1))
        assert secret is None or secret not in message


def test_corpus_is_complete():
    kept = {path.name for path in CORPUS.iterdir()} - {"expected.yaml", "base.txt"}
    assert kept == {name for name, case in CASES.items() if "generated" not in case}
    assert len(CASES) >= 60 and set(THROUGH_CLI) <= set(CASES)


def test_corpus_base_is_valid(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text(BASE, encoding="utf-8")
    assert load_recipe(path).dataset.repo_id == "local/tiny"


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_recipe_is_one_located_error(name, tmp_path, monkeypatch):
    path = recipe_file(name, tmp_path)
    for key, value in case_env(name).items():
        monkeypatch.delenv(key, raising=False) if value is None else monkeypatch.setenv(key, value)
    start = time.perf_counter()
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert time.perf_counter() - start < SECONDS_IN_PROCESS
    assert str(info.value) == f"{path}{CASES[name]['error']}"
    assert_no_secret_shown(name, str(info.value))


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CLI, MEMORY_CLI))


@pytest.mark.parametrize("name", THROUGH_CLI)
def test_hostile_recipe_through_the_cli(name, tmp_path):
    path = recipe_file(name, tmp_path)
    env = dict(os.environ)
    for key, value in case_env(name).items():
        env.pop(key, None) if value is None else env.update({key: value})
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "factory.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        preexec_fn=_limit_memory,
    )
    assert time.perf_counter() - start < SECONDS_CLI
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == f"error: {path}{CASES[name]['error']}\n"
    assert_no_secret_shown(name, out.stderr)
