"""Numeric precision per device: bf16 where the hardware runs it natively, float32 elsewhere.

bf16 is native on CUDA GPUs that report bf16 support, and on CPUs with the AVX512-BF16 or
AMX-BF16 instructions (torch's `torch.cpu.get_capabilities()`, read through cpuinfo; no guess
from the vendor). Elsewhere torch emulates bf16, more slowly than float32, so float32 is kept.

Training uses bf16 as autocast (`SFTConfig(bf16=True)`, with `use_cpu` on a CPU): the weights,
LoRA adapters included, stay float32 and only the matmuls run in bf16. Evaluation loads the
model in the dtype `eval.dtype` names; `auto` is bf16 where it is native, float32 elsewhere.
"""

from __future__ import annotations

from typing import Any

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instruction sets that compute bf16 natively
# What `eval.dtype: auto` resolves to where bf16 is native. bench/bf16_accuracy.py evaluated the
# same SVAMP adapter on the 300 test problems in float32 and in bf16 (merged first, as a student
# alone is evaluated): bf16 changed about a third of the greedy outputs but not the accuracy
# beyond the noise (39 right against 42, 1 and 4 discordant, exact McNemar p = 0.375;
# bench/README.md).
AUTO_EVAL_DTYPE = "bfloat16"
EVAL_DTYPES = ("auto", "float32", "bfloat16")


def cpu_bf16_flags() -> list[str]:
    """The native-bf16 instruction sets this CPU has (empty when it has none)."""
    import torch

    capabilities = torch.cpu.get_capabilities()
    return [flag for flag in CPU_BF16_FLAGS if capabilities.get(flag)]


def cuda_bf16() -> bool:
    """A CUDA GPU is present and supports bf16."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def device() -> str:
    """Where training and evaluation run: `cuda` when a GPU is present, else `cpu`."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def bf16_native() -> bool:
    """bf16 runs natively where training and evaluation run."""
    return cuda_bf16() if device() == "cuda" else bool(cpu_bf16_flags())


def hardware() -> dict[str, Any]:
    """What the precision choice was made from, for metrics and cards."""
    found = {"device": device(), "bf16_native": bf16_native()}
    if found["device"] == "cpu":
        found["cpu_bf16_flags"] = cpu_bf16_flags()
    return found


def training_options(requested: dict[str, Any]) -> dict[str, Any]:
    """SFTConfig precision keys: bf16 autocast where native, unless the recipe's `train.sft`
    (`requested`) sets `bf16` or `fp16` itself; `use_cpu` wherever bf16 trains on a CPU,
    which TrainingArguments requires."""
    options = {}
    if "bf16" not in requested and "fp16" not in requested:
        options["bf16"] = bf16_native()
    bf16 = requested.get("bf16", options.get("bf16", False))
    if bf16 and device() == "cpu":
        options["use_cpu"] = True
    return options


def training_precision(args) -> str:
    """How a Trainer with these TrainingArguments computes: `bf16` or `fp16` autocast over
    float32 weights, or `float32`."""
    return {"bf16": "bf16 autocast", "fp16": "fp16 autocast"}.get(args.mixed_precision, "float32")


def eval_dtype(choice: str = "auto") -> str:
    """The dtype evaluation loads a model in: `float32`, `bfloat16`, or for `auto`
    `AUTO_EVAL_DTYPE` where bf16 is native and float32 elsewhere."""
    if choice not in EVAL_DTYPES:
        raise ValueError(f"eval.dtype must be one of {', '.join(EVAL_DTYPES)}, not {choice!r}")
    if choice == "auto":
        return AUTO_EVAL_DTYPE if bf16_native() else "float32"
    return choice
