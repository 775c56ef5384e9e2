"""Distributed training through `accelerate launch`: the shipped configs, the command line, and a
real two-process DDP run (gloo, on the CPU) of `cot-factory train --accelerate` on the tiny model.
No GPU here: the DeepSpeed ZeRO and FSDP configs are only parsed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_train import toy_recipe

from factory.launch import accelerate_config, launch_command
from factory.recipe import load_recipe
from factory.train import sft_trainer

pytestmark = pytest.mark.slow  # starts servers or trains models

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["ddp", "zero2", "zero3", "fsdp"])
def test_accelerate_configs_and_launch_command(name, tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(accelerate_config(name)))
    assert config.distributed_type.value in ("MULTI_GPU", "DEEPSPEED", "FSDP")
    command = launch_command(Path("recipes/x.yaml"), name, ["tiny"], ["cot-L3"], tmp_path)
    assert Path(command[0]).name == "accelerate" and command[1] == "launch"
    assert command[2:4] == ["--config_file", str(ROOT / "recipes" / "accelerate" / f"{name}.yaml")]
    assert command[4:] == [
        "-m",
        "factory.cli",
        "train",
        "recipes/x.yaml",
        "--student",
        "tiny",
        "--config",
        "cot-L3",
        "--home",
        str(tmp_path),
    ]


def cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "factory.cli", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_ddp_on_two_cpu_processes_trains_one_adapter(tmp_path, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    path, home = toy_recipe(tmp_path, tiny_model_dir, sft={"num_train_epochs": 3}), tmp_path / "h"
    cli("build", path, "--home", home)
    config = yaml.safe_load(accelerate_config("ddp").read_text())
    config.update(num_processes=2, mixed_precision="no", main_process_port=0)  # a free port
    (tmp_path / "cpu-ddp.yaml").write_text(yaml.safe_dump(config))
    # `cot-factory train --accelerate` sets ACCELERATE_USE_CPU itself where there is no GPU.
    gpu = torch.accelerator.is_available()
    env = {**os.environ, "ACCELERATE_USE_CPU": "true"} if gpu else None
    done = cli("train", path, "--accelerate", tmp_path / "cpu-ddp.yaml", "--home", home, env=env)

    recipe = load_recipe(path)
    (run,) = (home / "runs").iterdir()  # the build's
    (out,) = {p.parent for p in run.rglob("training_metrics.json")}
    assert [p.parent for p in run.rglob("adapter_config.json")] == [out / "adapter"]
    assert not (out / "checkpoints").exists()
    metrics = json.loads((out / "training_metrics.json").read_text())
    settings = json.loads((out / "training_config.json").read_text())
    assert settings["distributed_type"] == "MULTI_CPU" and settings["world_size"] == 2
    assert metrics["rows"] == 16 and metrics["steps"] == 3 * 2, "batches of 4 on each process"
    start = sft_trainer(recipe, recipe.students[0], "answer-only", run / "dataset", tmp_path, home)
    tokens = sum(len(ids) for ids in start.train_dataset["input_ids"])
    assert metrics["train_tokens"] == 3 * tokens, "the tokens of both processes"
    printed = done.stdout.count(f"tiny on answer-only: loss {metrics['train_loss']}, adapter")
    assert printed == 2, "each process returns the finished run's metrics"

    trained = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), out / "adapter"
    )
    initial = {n: p for n, p in start.model.named_parameters() if "lora_" in n}
    after = dict(trained.named_parameters())
    assert len(initial) == 28 and all(not torch.equal(p, after[n]) for n, p in initial.items())
