"""The wheel as a user installs it: built from this checkout, installed into a fresh virtualenv,
run from a folder outside the repository. It builds a dataset, renders every card (dataset,
model, Space), builds a Space folder and finds the accelerate configs, all from package data
(no symlink, no path back into the repository)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from test_train import toy_recipe

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel_python(tmp_path_factory) -> Path:
    """A fresh venv holding only the cot-factory wheel; its dependencies come from the test
    environment's site-packages through a .pth file (nothing is downloaded)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp / "dist").glob("cot_factory-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    python = tmp / "venv" / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    return python


def in_wheel(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_wheel_imports_from_its_own_install(wheel_python, tmp_path):
    out = in_wheel(wheel_python, "-c", "import factory; print(factory.__file__)", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "site-packages" in out.stdout and str(ROOT) not in out.stdout


def test_the_wheel_ships_cards_space_app_and_accelerate_configs(wheel_python, tmp_path):
    probe = (
        "import json\n"
        "from importlib.resources import files\n"
        "from factory.launch import accelerate_config\n"
        "print(json.dumps({\n"
        "  'cards': sorted(p.name for p in files('factory.card_templates').iterdir()),\n"
        "  'app': (files('factory.space_template') / 'app.py').is_file(),\n"
        "  'configs': [str(accelerate_config(n)) for n in ('ddp', 'zero2', 'zero3', 'fsdp')],\n"
        "}))\n"
    )
    out = in_wheel(wheel_python, "-c", probe, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    shipped = json.loads(out.stdout)
    expected = {"dataset_card.md.jinja", "model_card.md.jinja", "space_readme.md.jinja"}
    assert expected <= set(shipped["cards"]) and shipped["app"] is True
    for config in shipped["configs"]:
        assert "site-packages" in config and str(ROOT) not in config
        assert yaml.safe_load(Path(config).read_text())["distributed_type"]


def test_the_wheel_runs_the_pipeline_and_renders_every_card(wheel_python, tmp_path, tiny_model_dir):
    from huggingface_hub import DatasetCard, ModelCard, SpaceCard

    recipe = toy_recipe(tmp_path, tiny_model_dir, name="wheeled")
    home = tmp_path / "home"
    env_home = ["--home", str(home)]
    out = in_wheel(wheel_python, "-m", "factory.cli", "run", str(recipe), *env_home, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = (home / "runs").glob("wheeled-*")
    manifest = json.loads((run / "manifest.json").read_text())
    dataset = DatasetCard.load(Path(manifest["dataset"]["path"]) / "README.md")
    assert {c["config_name"] for c in dataset.data.configs} == {"answer-only", "problems"}
    (student,) = manifest["students"]
    model = ModelCard.load(Path(student["published"]["path"]) / "README.md")
    assert (
        model.data.library_name == "peft" and model.data.eval_results[0].metric_type == "accuracy"
    )
    space = SpaceCard.load(run / "space" / "README.md")
    assert space.data.sdk == "gradio" and (run / "space" / "app.py").is_file()
    assert (run / "space" / "questions.py").is_file() and (run / "space" / "answers.py").is_file()
