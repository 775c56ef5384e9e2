"""Training throughput of `cot-factory train` against the plain TRL script a user would write.

Both train SmolLM2-135M-Instruct (`smollm2-135m`) with LoRA on the same first `--rows` rows of the
SVAMP `gpt-4o-cot-L3` config (the paper's GPT-4o CoTs, built with `recipes/svamp-paper.yaml`),
for one epoch, with the same `SFTConfig` and `LoraConfig` settings except:

- cot-factory: `factory.train.train_student` with its defaults: padding-free (each batch is its
  rows concatenated into one sequence, no pad token), attention row by row (`sdpa_rows`), and
  bf16 autocast over float32 weights where the hardware runs bf16 natively (factory.precision);
- plain: `SFTTrainer(model, args=SFTConfig(...), train_dataset=rows, processing_class=tokenizer,
  peft_config=LoraConfig(...))` in float32 with TRL's default collator, which right-pads every
  batch to its longest row. Its batches are counted as training sees them: real tokens, pads.

Each repeat trains both, in alternating order, after one untimed warm-up step.

    .venv/bin/python bench/train_throughput.py [--rows 64] [--repeats 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
os.environ.setdefault("TQDM_DISABLE", "1")  # one table on stdout, no progress bars
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# A private `datasets` cache: it keys a local dataset folder by its name, config and card YAML,
# not by its files, so a folder named `dataset` (or `subset`) would load rows cached by an earlier,
# different one.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="bench-hf-datasets-")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)

DATA = ROOT.parent / "shared" / "data"
RECIPE = ROOT / "recipes" / "svamp-paper.yaml"
HOME = Path(tempfile.gettempdir()) / "cot-factory-bench-home"  # the converted model, reused
STUDENT = "smollm2-135m"
CONFIG = "gpt-4o-cot-L3"
MODES = ("factory", "plain")
# The run's own settings, given to both: one epoch, a loss every step, no checkpoints.
RUN_SFT = {"num_train_epochs": 1, "logging_steps": 1, "save_strategy": "no"}
# The plain script's settings, written out as a user would: cot-factory's defaults (checked
# against `sft_options` below) without `padding_free`.
PLAIN_SFT = {
    **RUN_SFT,
    "learning_rate": 3e-4,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.03,
    "per_device_train_batch_size": 8,
    "max_length": None,
    "activation_checkpointing": False,
    "bf16": False,
    "report_to": "none",
    "seed": 0,
    "data_seed": 0,
}
PLAIN_LORA = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": "all-linear",
    "task_type": "CAUSAL_LM",
}
IGNORED_ARGS = {"output_dir", "logging_dir", "run_name"}  # paths, not settings


@dataclass
class Measure:
    seconds: float
    cpu_share: float  # process CPU time / (wall time x threads), loading included
    real_tokens: int
    pad_tokens: int
    rows: int
    steps: int
    train_loss: float
    losses: list[float]
    precision: str = "float32"


@dataclass
class Results:
    measures: dict[str, list[Measure]] = field(default_factory=lambda: {m: [] for m in MODES})

    def median(self, mode: str, attr: str) -> float:
        return statistics.median(getattr(m, attr) for m in self.measures[mode])


def require_data() -> None:
    """Point the recipe at the shared SVAMP data (unless SVAMP_DIR / PAPER_COT_DIR already do);
    exit with a clear message when it is missing."""
    svamp = Path(os.environ.setdefault("SVAMP_DIR", str(DATA / "svamp")))
    cots = Path(os.environ.setdefault("PAPER_COT_DIR", str(DATA / "paper-cot")))
    needed = [svamp / "train.jsonl", svamp / "test.jsonl", cots / "svamp"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise SystemExit(f"needs the shared SVAMP data and the paper's CoTs; missing: {missing}")


def bench_recipe():
    """svamp-paper.yaml with the student and this run's short training settings."""
    from factory.recipe import Student, TrainSpec, load_recipe

    recipe = load_recipe(RECIPE)
    return recipe.model_copy(
        update={"students": [Student(model=STUDENT)], "train": TrainSpec(sft=RUN_SFT)}
    )


def subset_dataset(recipe, rows: int, tmp: Path) -> Path:
    """Build the dataset, then a dataset folder holding only the first `rows` rows of CONFIG."""
    from datasets import load_dataset

    from factory.run import build_dataset

    built = build_dataset(recipe, tmp / "home-data")
    train = load_dataset(str(built.run.dataset), CONFIG, split="train")
    if len(train) < rows:
        raise SystemExit(f"{CONFIG} has {len(train)} rows, fewer than --rows {rows}")
    folder = tmp / "subset"
    train.select(range(rows)).to_parquet(str(folder / CONFIG / "train-00000-of-00001.parquet"))
    (folder / "README.md").write_text(
        f"---\nconfigs:\n- config_name: {CONFIG}\n  data_files:\n  - split: train\n"
        f"    path: {CONFIG}/train-*\n---\n"
    )
    return folder


def check_same_settings(recipe) -> list[str]:
    """The plain script's SFTConfig and LoraConfig against cot-factory's; returns what differs."""
    from trl import SFTConfig

    from factory.train import lora_options, sft_options

    if lora_options(recipe) != PLAIN_LORA:
        raise SystemExit(f"LoRA settings differ: {lora_options(recipe)} vs {PLAIN_LORA}")
    ours = SFTConfig(output_dir="x", **sft_options(recipe)).to_dict()
    plain = SFTConfig(output_dir="x", **PLAIN_SFT).to_dict()
    differ = sorted(k for k in ours if k not in IGNORED_ARGS and ours[k] != plain.get(k))
    allowed = {"padding_free", "save_steps", "save_total_limit", "dataloader_pin_memory"}
    allowed |= {"bf16", "use_cpu", "model_init_kwargs"}  # precision and the attention kernel
    allowed |= {"include_num_input_tokens_seen"}  # counting only
    if set(differ) - allowed:
        raise SystemExit(f"SFTConfig settings differ beyond these: {set(differ) - allowed}")
    return [f"{k}: {ours[k]} vs {plain[k]}" for k in differ]


class CountingCollator:
    """Wraps a collator; counts the real (attention mask 1) and pad tokens of every batch."""

    def __init__(self, collator):
        self.collator, self.real, self.pad, self.rows = collator, 0, 0, 0

    def __call__(self, examples):
        batch = self.collator(examples)
        mask = batch["attention_mask"]
        self.real += int(mask.sum())
        self.pad += int(mask.numel() - mask.sum())
        self.rows += len(examples)
        return batch


def make_trainer(dataset_dir: Path, out: Path, sft: dict, lora: dict | None, rows=None):
    """An SFTTrainer on CONFIG's rows (the first `rows`, or all) with these settings."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from factory.models import resolve_model

    path = resolve_model(STUDENT, HOME)
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = load_dataset(str(dataset_dir), CONFIG, split="train")
    data = data.select_columns(["prompt", "completion"])
    data = data.select(range(rows)) if rows else data
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return SFTTrainer(
        model=model,
        args=SFTConfig(output_dir=str(out), **sft),
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=LoraConfig(**lora) if lora else None,
    )


def plain_trainer(dataset_dir: Path, out: Path, rows: int | None = None):
    """The plain script: model, tokenizer, rows, SFTConfig and LoraConfig, padded batches, with
    its collator wrapped to count tokens."""
    trainer = make_trainer(dataset_dir, out, PLAIN_SFT, PLAIN_LORA, rows)
    trainer.data_collator = CountingCollator(trainer.data_collator)
    return trainer


def run_plain(dataset_dir: Path, out: Path) -> Measure:
    """Train with the plain script; time `trainer.train()` plus saving the adapter, the span
    `train_student` reports as `seconds`."""
    span, cpu = time.perf_counter(), time.process_time()
    with every_position_scored(True):
        trainer = plain_trainer(dataset_dir, out)
        start = time.perf_counter()
        output = trainer.train()
        trainer.save_model(str(out / "adapter"))
    seconds = time.perf_counter() - start
    counter = trainer.data_collator
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return Measure(
        seconds,
        cpu_share(span, cpu),
        counter.real,
        counter.pad,
        counter.rows,
        trainer.state.global_step,
        output.training_loss,
        losses,
    )


@contextlib.contextmanager
def every_position_scored(active: bool):
    """With `active`, TRL's fused LM head as it ships, which on a CPU projects every position,
    the prompt's included, through its Triton stand-in: what a plain TRL script does, and what
    cot-factory did before `factory.cpu_head` (undone here, and kept from redoing)."""
    import trl.trainer.utils as trl_utils

    import factory.cpu_head

    if not active:
        yield
        return
    chooser, head = trl_utils._use_triton, trl_utils._ChunkedLogProbFunction
    patch = factory.cpu_head.use_lean_cpu_head
    trl_utils._use_triton = getattr(chooser, "trl_choice", chooser)
    trl_utils._ChunkedLogProbFunction = getattr(head, "trl_function", None) or head
    factory.cpu_head.use_lean_cpu_head = lambda: None
    try:
        yield
    finally:
        trl_utils._use_triton, trl_utils._ChunkedLogProbFunction = chooser, head
        factory.cpu_head.use_lean_cpu_head = patch


def run_factory(recipe, dataset_dir: Path, out: Path) -> Measure:
    """Train with `train_student`; its metrics give the time and the real tokens (no pads)."""
    from factory.train import train_student

    span, cpu = time.perf_counter(), time.process_time()
    metrics = train_student(recipe, recipe.students[0], CONFIG, dataset_dir, out, HOME).metrics
    return Measure(
        metrics["seconds"],
        cpu_share(span, cpu),
        metrics["train_tokens"],
        0,  # padding-free: each batch is its rows concatenated
        int(metrics["rows"] * metrics["epochs"]),
        metrics["steps"],
        metrics["train_loss"],
        [h["loss"] for h in metrics["loss_history"]],
        metrics["precision"],
    )


def cpu_share(span_start: float, cpu_start: float) -> float:
    """Process CPU time since `cpu_start` over wall time since `span_start` x torch threads:
    about 1 when training had the cores to itself, well under 1 when other work took them."""
    import torch

    wall = time.perf_counter() - span_start
    return (time.process_time() - cpu_start) / wall / torch.get_num_threads()


def run_mode(mode: str, recipe, dataset_dir: Path, out: Path) -> Measure:
    if mode == "factory":
        return run_factory(recipe, dataset_dir, out)
    return run_plain(dataset_dir, out)


def warm_up(dataset_dir: Path, out: Path) -> None:
    """One untimed training step: imports, kernels, allocator."""
    trainer = plain_trainer(dataset_dir, out, rows=PLAIN_SFT["per_device_train_batch_size"])
    trainer.train()


def benchmark(rows: int, repeats: int) -> dict:
    """Build the data, check the settings match, warm up, then both modes per repeat."""
    require_data()
    recipe = bench_recipe()
    differ = check_same_settings(recipe)
    results = Results()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as name:
        tmp = Path(name)
        dataset_dir = subset_dataset(recipe, rows, tmp)
        with contextlib.redirect_stdout(sys.stderr):
            warm_up(dataset_dir, tmp / "warmup")
        for i in range(repeats):
            order = MODES if i % 2 == 0 else MODES[::-1]
            for mode in order:
                out = tmp / f"run-{i}-{mode}"
                with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its logs
                    results.measures[mode].append(run_mode(mode, recipe, dataset_dir, out))
            check_same_work(results, i, rows)
    return summarize(results, rows, repeats, differ)


def check_same_work(results: Results, i: int, rows: int) -> None:
    """Both modes must see the `rows` examples, and the same steps and real tokens."""
    f, p = (results.measures[m][i] for m in MODES)
    if f.rows != rows:
        raise SystemExit(f"repeat {i}: trained on {f.rows} rows, not {rows}")
    for attr in ("rows", "steps", "real_tokens"):
        if getattr(f, attr) != getattr(p, attr):
            raise SystemExit(
                f"repeat {i}: {attr} differ: factory {getattr(f, attr)}, plain {getattr(p, attr)}"
            )


def summarize(results: Results, rows: int, repeats: int, differ: list[str]) -> dict:
    """Medians per mode and the cot-factory / plain ratio of real tokens per second."""
    modes = {}
    for mode in MODES:
        seconds = results.median(mode, "seconds")
        last = results.measures[mode][-1]
        processed = last.real_tokens + last.pad_tokens
        modes[mode] = {
            "seconds": seconds,
            "real_tokens": last.real_tokens,
            "pad_tokens": last.pad_tokens,
            "pad_share": last.pad_tokens / processed,
            "real_tokens_per_s": last.real_tokens / seconds,
            "processed_tokens_per_s": processed / seconds,
            "rows": last.rows,
            "steps": last.steps,
            "train_loss": results.median(mode, "train_loss"),
            "final_loss": last.losses[-1],
            "cpu_share": results.median(mode, "cpu_share"),
            "precision": last.precision,
            "all_seconds": [m.seconds for m in results.measures[mode]],
        }
    f, p = modes["factory"], modes["plain"]
    loss_gap = max(
        abs(a - b)
        for a, b in zip(
            results.measures["factory"][-1].losses,
            results.measures["plain"][-1].losses,
            strict=True,
        )
    )
    return {
        "student": STUDENT,
        "config": CONFIG,
        "rows": rows,
        "repeats": repeats,
        "sft": PLAIN_SFT,
        "lora": PLAIN_LORA,
        "sft_differences": differ,
        "modes": modes,
        "ratios": {
            "real_tokens_per_s": f["real_tokens_per_s"] / p["real_tokens_per_s"],
            "time": p["seconds"] / f["seconds"],
            "ideal_from_padding": (p["real_tokens"] + p["pad_tokens"]) / p["real_tokens"],
            "max_step_loss_gap": loss_gap,
        },
    }


def report(s: dict) -> str:
    """The summary as a compact table."""
    names = {"factory": "cot-factory", "plain": "plain TRL (fp32, padded)"}
    r = s["ratios"]
    lines = [
        f"training throughput: {s['student']} + LoRA r={s['lora']['r']} on {s['rows']} rows of"
        f" {s['config']}, batch {s['sft']['per_device_train_batch_size']}, 1 epoch,"
        f" median of {s['repeats']} repeat(s)",
        "SFTConfig differences (cot-factory vs plain): " + "; ".join(s["sft_differences"]),
        f"cot-factory computes in {s['modes']['factory']['precision']}, plain in float32",
        f"{'mode':<28}{'seconds':>9}{'steps':>7}{'real tok':>10}{'pad tok':>9}{'pad %':>7}"
        f"{'real tok/s':>12}{'proc tok/s':>12}{'train loss':>12}{'last loss':>11}{'cpu':>6}",
    ]
    for mode, name in names.items():
        m = s["modes"][mode]
        lines.append(
            f"{name:<28}{m['seconds']:>9.1f}{m['steps']:>7}{m['real_tokens']:>10}"
            f"{m['pad_tokens']:>9}{100 * m['pad_share']:>7.1f}{m['real_tokens_per_s']:>12.1f}"
            f"{m['processed_tokens_per_s']:>12.1f}{m['train_loss']:>12.4f}{m['final_loss']:>11.4f}"
            f"{m['cpu_share']:>6.2f}"
        )
    lines += [
        f"real tokens/s, cot-factory / plain: {r['real_tokens_per_s']:.2f}x"
        f" (plain processes {r['ideal_from_padding']:.2f}x the real tokens: the ceiling if time"
        " were linear in tokens)",
        f"largest per-step loss difference: {r['max_step_loss_gap']:.4f}"
        " (same rows, order and seed; batch layout and precision differ)",
        "cpu: process CPU time / (wall time x torch threads) over the run, loading included;"
        " well under 1.00 means other work took the cores",
    ]
    return "\n".join(lines)


def quiet_warnings() -> None:
    """Drop the upstream deprecation and no-accelerator notices every trainer repeats."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=64, help="training rows (one epoch)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats; medians")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    quiet_warnings()
    summary = benchmark(args.rows, args.repeats)
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
