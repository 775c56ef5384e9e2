"""Multi-GPU training without home-made distribution: `accelerate launch` runs `cot-factory
train` once per process, with one of the configs in `recipes/accelerate/` (DDP, DeepSpeed ZeRO-2
and ZeRO-3, FSDP) or any accelerate config file."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

CONFIGS = files("factory.accelerate_configs")  # recipes/accelerate/ in the repository


def accelerate_config(name_or_path: str) -> Path:
    """A shipped config by name (`ddp`, `zero2`, `zero3`, `fsdp`), or a config file."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIGS / f"{name_or_path}.yaml"
    if not shipped.is_file():
        names = ", ".join(
            sorted(p.name[:-5] for p in CONFIGS.iterdir() if p.name.endswith(".yaml"))
        )
        raise FileNotFoundError(f"no accelerate config {name_or_path!r} (shipped: {names})")
    return shipped


def launch_command(
    recipe: Path,
    config: str,
    students: list[str] | None,
    configs: list[str] | None,
    home: Path | None,
) -> list[str]:
    """The `accelerate launch` command line that trains the recipe's students on every GPU."""
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate),
        "launch",
        "--config_file",
        str(accelerate_config(config)),
        "-m",
        "factory.cli",
        "train",
        str(recipe),
    ]
    for student in students or []:
        command += ["--student", student]
    for name in configs or []:
        command += ["--config", name]
    if home:
        command += ["--home", str(home)]
    return command


def run_launch(command: list[str]) -> None:
    """Run the launch. On a machine without an accelerator the processes train together on the
    CPU (DDP over gloo): without `ACCELERATE_USE_CPU` each would train the whole run alone."""
    import torch

    env = dict(os.environ)
    if not torch.accelerator.is_available():
        env.setdefault("ACCELERATE_USE_CPU", "true")
    subprocess.run(command, check=True, env=env)
