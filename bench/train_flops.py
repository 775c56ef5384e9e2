"""Training FLOP/s of `cot-factory train` against this machine's measured matmul FLOP/s.

Trains SmolLM2-135M-Instruct (`smollm2-135m`) with `factory.train.train_student` on the first
`--rows` rows of the SVAMP `gpt-4o-cot-L3` config (LoRA by default, `--full` for full
fine-tuning), one epoch, padding-free, so every token processed is a real one, with cot-factory's
default precision (bf16 autocast where the CPU runs bf16 natively). Each repeat measures the
matmul peak in float32 and, where training runs in bf16, in bf16 (square matmuls, best of
several, torch's default threads; a CPU that only emulates bf16 is not timed in it), trains, and
the peaks are measured once more at the end: a repeat's peak is the best of the two measurements
around its training. Utilisation is against the peak of the dtype training computes its matmuls
in. The model FLOPs are counted from the real token counts:

- linear layers (N = weights of every nn.Linear, the tied lm_head included; the embedding lookup
  costs no FLOPs): full fine-tuning 6 N per token (forward 2 N, backward 2 N for the activation
  gradients and 2 N for the weight gradients); LoRA 4 N per token for the frozen base (forward,
  plus the activation gradients that must flow back to the first adapted layer; no weight
  gradients) and 6 N_lora per token for the adapters;
- attention scores and values, per row of n tokens: 6 x layers x n^2 x d_attn (forward QK^T and
  AV 4 n^2 d_attn per layer, halved by the causal mask; backward twice the forward): a few % of
  the total at these lengths, but counted.

Two references beside the peak, in the training's dtype: a matmul of the MLP's shape at the
batches' token count, and the attention kernel (SDPA forward + backward) timed alone on the run's
own batches, both as plain `sdpa` runs a padding-free batch (one sequence with a block-diagonal
mask, in the training's dtype) and row by row, as cot-factory's `sdpa_rows` does (on a CPU in
float32 whatever the training's dtype).

    .venv/bin/python bench/train_flops.py [--rows 64] [--full] [--repeats 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from train_throughput import (
    CONFIG,
    HOME,
    RUN_SFT,
    bench_recipe,
    cpu_share,
    make_trainer,
    quiet_warnings,
    require_data,
    subset_dataset,
)

MATMUL_SIZES = (1024, 1536, 2048)
COMPUTE_DTYPE = {"bf16 autocast": "bfloat16", "fp16 autocast": "float16", "float32": "float32"}


@dataclass
class Model:
    """What the FLOP count needs: parameter counts, shapes, and the batches' row lengths."""

    linear: int
    lora: int
    embedding: int
    layers: int
    heads: int
    head_dim: int
    hidden: int
    intermediate: int
    rows: list[int]
    batches: list[list[int]]


@dataclass
class Repeat:
    peak: float
    seconds: float
    cpu_share: float
    tokens: int
    steps: int
    precision: str


@dataclass
class Results:
    peaks: list[dict[str, dict[int, float]]] = field(default_factory=list)  # dtype -> size ->
    repeats: list[Repeat] = field(default_factory=list)


def matmul_flops(m: int, k: int, n: int, dtype: str = "float32", reps: int = 5) -> float:
    """Best FLOP/s of an (m x k) @ (k x n) matmul in `dtype`, after two warm-up calls."""
    import torch

    a, b = (torch.randn(*shape).to(getattr(torch, dtype)) for shape in ((m, k), (k, n)))
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best


def matmul_peak(dtypes: tuple[str, ...]) -> dict[str, dict[int, float]]:
    """FLOP/s of square matmuls of each size, in each of `dtypes`."""
    return {d: {n: matmul_flops(n, n, n, d) for n in MATMUL_SIZES} for d in dtypes}


def peak_dtypes(recipe) -> tuple[str, ...]:
    """float32, and first the dtype training will compute in where that is another one."""
    from factory.precision import training_options

    options = {**training_options(recipe.train.sft), **recipe.train.sft}
    low = "bfloat16" if options.get("bf16") else "float16" if options.get("fp16") else None
    return (low, "float32") if low else ("float32",)


def row_attention_dtype(dtype: str) -> str:
    """The dtype `sdpa_rows` computes in: float32 on a CPU, the training's elsewhere."""
    import torch

    return dtype if torch.cuda.is_available() else "float32"


def describe_model(recipe, dataset_dir: Path, out: Path) -> Model:
    """A trainer with `train_student`'s settings, used only to count: parameters, row lengths,
    and the padding-free batches its dataloader yields (the order training will see)."""
    import torch

    from factory.train import lora_options, sft_options

    trainer = make_trainer(dataset_dir, out, sft_options(recipe), lora_options(recipe))
    model, config = trainer.model, trainer.model.config
    linear = sum(m.weight.numel() for n, m in _base_linears(model))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lora = 0 if recipe.train.lora is None else trainable
    embedding = model.get_input_embeddings().weight.numel()
    batches = [torch.diff(b["cu_seq_lens_q"]).tolist() for b in trainer.get_train_dataloader()]
    return Model(
        linear,
        lora,
        embedding,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.head_dim,
        config.hidden_size,
        config.intermediate_size,
        [len(ids) for ids in trainer.train_dataset["input_ids"]],
        batches,
    )


def _base_linears(model):
    """The base model's nn.Linear layers (not the LoRA A/B matrices inside them)."""
    import torch

    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and "lora_" not in name
    ]


def attention_flops(lengths: list[int], layers: int, d_attn: int) -> float:
    """Training FLOPs of causal attention over rows of these lengths: forward QK^T and AV are
    2 x 2 n^2 d_attn per layer, halved by the causal mask; backward about twice the forward."""
    return 3 * sum(2 * n * n * d_attn for n in lengths) * layers


def training_flops(m: Model, tokens: int, full: bool, epochs: float = 1.0) -> dict[str, float]:
    """The model FLOPs of one training run over `tokens` real tokens, by part."""
    linear = (6 * m.linear if full else 4 * m.linear + 6 * m.lora) * tokens
    attention = attention_flops(m.rows, m.layers, m.heads * m.head_dim) * epochs
    return {"linear": linear, "attention": attention}


def sdpa_calls(
    lengths: list[int], heads: int, head_dim: int, dtype: str, row_dtype: str
) -> dict[str, list]:
    """One layer's SDPA inputs for a batch, two ways: packed in `dtype`, as padding-free training
    calls it (one sequence, a boolean block-diagonal causal mask), and row by row with
    `is_causal` in `row_dtype`."""
    import torch

    def qkv(n: int, dtype: str = dtype):
        return [
            torch.randn(1, heads, n, head_dim, dtype=getattr(torch, dtype), requires_grad=True)
            for _ in range(3)
        ]

    row = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    pos = torch.arange(len(row))
    mask = (row[:, None] == row[None, :]) & (pos[:, None] >= pos[None, :])
    return {
        "packed": [(qkv(len(row)), {"attn_mask": mask[None, None]})],
        "per_row": [(qkv(n, row_dtype), {"is_causal": True}) for n in lengths],
    }


def attention_seconds(m: Model, dtype: str, reps: int = 3) -> dict[str, float]:
    """SDPA forward + backward time of the whole run (every batch, every layer), packed in the
    training's `dtype` and row by row in `sdpa_rows`'s: per batch the best of `reps`, the two
    ways interleaved."""
    import torch.nn.functional as F

    totals = {"packed": 0.0, "per_row": 0.0}
    for lengths in m.batches:
        calls = sdpa_calls(lengths, m.heads, m.head_dim, dtype, row_attention_dtype(dtype))
        best = dict.fromkeys(totals, 1e9)
        for _ in range(reps):
            for mode, batch in calls.items():
                start = time.perf_counter()
                for (q, k, v), kwargs in batch:
                    F.scaled_dot_product_attention(q, k, v, **kwargs).sum().backward()
                best[mode] = min(best[mode], time.perf_counter() - start)
        for mode in totals:
            totals[mode] += best[mode] * m.layers
    return totals


def train_once(recipe, dataset_dir: Path, out: Path) -> Repeat:
    """`train_student` once: its seconds and real tokens, and the share of the cores it had."""
    from factory.train import train_student

    span, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its logs
        metrics = train_student(recipe, recipe.students[0], CONFIG, dataset_dir, out, HOME).metrics
    share, m = cpu_share(span, cpu), metrics
    return Repeat(0.0, m["seconds"], share, m["train_tokens"], m["steps"], m["precision"])


def benchmark(rows: int, full: bool, repeats: int) -> dict:
    """Build the data, count the model, then per repeat: matmul peak, training; a final peak."""
    from factory.recipe import TrainSpec

    require_data()
    recipe = bench_recipe()
    if full:
        recipe = recipe.model_copy(update={"train": TrainSpec(sft=RUN_SFT, lora=None)})
    results = Results()
    with tempfile.TemporaryDirectory(prefix="bench-flops-") as name:
        tmp = Path(name)
        dataset_dir = subset_dataset(recipe, rows, tmp)
        with contextlib.redirect_stdout(sys.stderr):
            model = describe_model(recipe, dataset_dir, tmp / "probe")
        dtypes = peak_dtypes(recipe)
        matmul_peak(dtypes)  # warm-up
        for i in range(repeats):
            results.peaks.append(matmul_peak(dtypes))
            results.repeats.append(train_once(recipe, dataset_dir, tmp / f"run-{i}"))
        results.peaks.append(matmul_peak(dtypes))
    dtype = COMPUTE_DTYPE[results.repeats[-1].precision]
    for i, r in enumerate(results.repeats):
        r.peak = max(max(results.peaks[j][dtype].values()) for j in (i, i + 1))
    return summarize(results, model, attention_seconds(model, dtype), rows, full, repeats)


def summarize(
    results: Results, model: Model, attention: dict, rows: int, full: bool, repeats: int
) -> dict:
    """FLOPs by part, training FLOP/s, the peak, and their ratio (medians over repeats)."""
    import torch

    last = results.repeats[-1]
    dtype = COMPUTE_DTYPE[last.precision]
    flops = training_flops(model, last.tokens, full)
    total = flops["linear"] + flops["attention"]
    seconds = statistics.median(r.seconds for r in results.repeats)
    peak = statistics.median(r.peak for r in results.repeats)
    utilisation = statistics.median(total / r.seconds / r.peak for r in results.repeats)
    tokens_per_batch = statistics.mean(sum(b) for b in model.batches)
    shaped = matmul_flops(round(tokens_per_batch), model.hidden, model.intermediate, dtype)
    fp32_peak = statistics.median(
        max(max(results.peaks[j]["float32"].values()) for j in (i, i + 1))
        for i in range(len(results.repeats))
    )
    return {
        "config": CONFIG,
        "rows": rows,
        "mode": "full" if full else "lora",
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "params": {
            "linear": model.linear,
            "lora": model.lora,
            "embedding": model.embedding,
        },
        "layers": model.layers,
        "hidden": model.hidden,
        "intermediate": model.intermediate,
        "tokens": last.tokens,
        "steps": last.steps,
        "mean_row_tokens": statistics.mean(model.rows),
        "mean_batch_tokens": tokens_per_batch,
        "flops": {**flops, "total": total},
        "seconds": seconds,
        "cpu_share": statistics.median(r.cpu_share for r in results.repeats),
        "training_flops_per_s": total / seconds,
        "precision": last.precision,
        "compute_dtype": dtype,
        "matmul_peak_flops_per_s": peak,
        "float32_matmul_peak_flops_per_s": fp32_peak,
        "matmul_by_size": {
            d: {str(k): v for k, v in sizes.items()} for d, sizes in results.peaks[-1].items()
        },
        "model_shaped_matmul_flops_per_s": shaped,
        "utilisation": utilisation,
        "utilisation_of_shaped": total / seconds / shaped,
        "attention_seconds": attention,
        "row_attention_dtype": row_attention_dtype(dtype),
    }


def report(s: dict) -> str:
    """The summary as a few lines."""
    g, f, p, a = 1e9, s["flops"], s["params"], s["attention_seconds"]
    formula = "6 N T" if s["mode"] == "full" else "4 N T + 6 N_lora T"
    sizes = "; ".join(
        f"{d} " + ", ".join(f"{k}: {v / g:.1f}" for k, v in by_size.items())
        for d, by_size in s["matmul_by_size"].items()
    )
    fp32 = (
        f"; float32 {s['float32_matmul_peak_flops_per_s'] / g:.1f}"
        if s["compute_dtype"] != "float32"
        else ""
    )
    return "\n".join(
        [
            f"training FLOP/s: smollm2-135m ({s['mode']}) on {s['rows']} rows of {s['config']},"
            f" 1 epoch, {s['steps']} steps, padding-free, {s['threads']} torch threads,"
            f" median of {s['repeats']} repeat(s)",
            f"params: N (nn.Linear weights, tied lm_head included) {p['linear'] / 1e6:.1f} M,"
            f" N_lora {p['lora'] / 1e6:.2f} M; embedding lookup ({p['embedding'] / 1e6:.1f} M)"
            " costs no FLOPs",
            f"tokens T: {s['tokens']} real ({s['mean_row_tokens']:.0f} per row,"
            f" {s['mean_batch_tokens']:.0f} per batch)",
            f"model FLOPs: linear {formula} = {f['linear'] / g:.0f} G, causal attention"
            f" {f['attention'] / g:.1f} G ({100 * f['attention'] / f['total']:.1f}%),"
            f" total {f['total'] / g:.0f} G",
            f"training ({s['precision']}): {s['seconds']:.1f} s ->"
            f" {s['training_flops_per_s'] / g:.2f} GFLOP/s (cpu share {s['cpu_share']:.2f})",
            f"matmul peak, {s['compute_dtype']} square: {s['matmul_peak_flops_per_s'] / g:.1f}"
            f" GFLOP/s{fp32} (last measurement by size, GFLOP/s: {sizes})",
            f"utilisation, training / {s['compute_dtype']} matmul peak:"
            f" {100 * s['utilisation']:.1f}%",
            f"for scale: a {s['compute_dtype']} ({s['mean_batch_tokens']:.0f} x {s['hidden']})"
            f" @ ({s['hidden']} x"
            f" {s['intermediate']}) matmul, the MLP's shape, runs"
            f" {s['model_shaped_matmul_flops_per_s'] / g:.1f} GFLOP/s; training is"
            f" {100 * s['utilisation_of_shaped']:.1f}% of that",
            f"attention, SDPA forward + backward timed alone on these batches x {s['layers']}"
            f" layers: {a['packed']:.1f} s as plain `sdpa` runs a padding-free batch (one"
            f" sequence, block mask, {s['compute_dtype']}), {a['per_row']:.1f} s row by row with"
            f" is_causal as `sdpa_rows` does ({s['row_attention_dtype']};"
            f" {100 * a['per_row'] / s['seconds']:.0f}% of the training time)",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=64, help="training rows (one epoch)")
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats; medians")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    quiet_warnings()
    summary = benchmark(args.rows, args.full, args.repeats)
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
