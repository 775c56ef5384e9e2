"""A reduced svamp-paper sweep, with the old training and evaluation settings against the new.

Three configs of `recipes/svamp-paper.yaml` (`--configs`), the first `--rows` training rows of
each, one epoch, the recipe's LoRA and learning rate; SmolLM2-135M-Instruct evaluated on the
first `--problems` SVAMP test problems at the recipe's `max_new_tokens`. Both settings do the
same work: train three adapters, evaluate the base model and the three adapters.

- old: float32 training with plain `sdpa` (`bf16: false`, `model_init_kwargs: {dtype:
  float32}`) and TRL's LM head projecting every position, and each student evaluated alone in
  float32 at batch 16 (`evaluated`: one model load and one `evaluate` per student), each batch
  decoded to its longest answer with transformers' own KV cache, as a sweep did before;
- new: cot-factory's training defaults (bf16 autocast where native, `sdpa_rows` attending in
  float32 on a CPU, `factory/cpu_head.py` projecting the completion's positions only), and the
  base and the three adapters evaluated by
  `evaluate_adapters` (on a CPU each merged and alone; on a GPU one mixed-adapter `generate` per
  batch of `--batch-size` problems), `eval.dtype: auto`, finished rows leaving each batch every
  `SEGMENT_TOKENS` tokens, the KV cache growing in place.

The stages interleave so the machine's noise falls on both alike: for each config the two
trainings run back to back (alternating which goes first), then the two evaluations.

    .venv/bin/python bench/sweep_speed.py [--rows 200] [--problems 100] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

from eval_batching import decoding_as_before
from train_throughput import (
    HOME,
    RECIPE,
    STUDENT,
    cpu_share,
    every_position_scored,
    quiet_warnings,
    require_data,
)

SETTINGS = ("old", "new")
CONFIGS = "gpt-4o-cot-L1,gpt-4o-cot-L3,gpt-4o-cot-L6"
RUN_SFT = {"num_train_epochs": 1, "save_strategy": "no", "logging_steps": 5}
OLD_SFT = {"bf16": False, "model_init_kwargs": {"dtype": "float32"}}


def recipes(batch_size: int) -> dict:
    """svamp-paper with one epoch, no checkpoints and the student alone, per setting."""
    from factory.recipe import Student, load_recipe

    paper = load_recipe(RECIPE)
    sft = {**paper.train.sft, **RUN_SFT}
    made = {}
    for setting, extra, spec in (
        ("old", OLD_SFT, {"batch_size": 16, "dtype": "float32"}),
        ("new", {}, {"batch_size": batch_size, "dtype": "auto"}),
    ):
        train = paper.train.model_copy(update={"sft": {**sft, **extra}, "configs": None})
        made[setting] = paper.model_copy(
            update={
                "students": [Student(model=STUDENT)],
                "train": train,
                "eval": paper.eval.model_copy(update=spec),
            }
        )
    return made


def subset(recipe, configs: list[str], rows: int, tmp: Path) -> Path:
    """Build the dataset, then a folder holding the first `rows` training rows of each config."""
    from datasets import load_dataset

    from factory.run import build_dataset

    built = build_dataset(recipe, tmp / "home-data")
    folder, card = tmp / "subset", ["---", "configs:"]
    for config in configs:
        train = load_dataset(str(built.run.dataset), config, split="train")
        train.select(range(rows)).to_parquet(str(folder / config / "train-00000-of-00001.parquet"))
        card += [f"- config_name: {config}", "  data_files:", "  - split: train"]
        card += [f"    path: {config}/train-*"]
    (folder / "README.md").write_text("\n".join([*card, "---", ""]))
    return folder


def train(recipe, config: str, dataset: Path, out: Path, old: bool) -> tuple[float, dict]:
    """Wall seconds of `train_student` (model loading included) and its metrics."""
    from factory.train import train_student

    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr), every_position_scored(old):
        result = train_student(recipe, recipe.students[0], config, dataset, out, HOME)
    return time.perf_counter() - start, result.metrics


def evaluate_old(recipe, students: dict, problems, out: Path) -> tuple[float, dict]:
    """Each student alone, one model load and one `evaluate` each, decoded as before
    (`decoding_as_before`: whole batches, transformers' own KV cache)."""
    from factory.evaluate import evaluated

    start, task, metrics = time.perf_counter(), recipe.source.task, {}
    with decoding_as_before(True):
        for label, adapter in students.items():
            where = out / label
            metrics[label] = evaluated(
                STUDENT, adapter, problems, task, recipe.eval, where, HOME, label
            )
    return time.perf_counter() - start, metrics


def evaluate_new(recipe, students: dict, problems, out: Path) -> tuple[float, dict]:
    """Every student in one `evaluate_adapters`."""
    from factory.evaluate import evaluate_adapters

    start, task = time.perf_counter(), recipe.source.task
    outs = {label: out / label for label in students}
    metrics = evaluate_adapters(STUDENT, students, problems, task, recipe.eval, outs, HOME)
    return time.perf_counter() - start, metrics


def benchmark(configs: list[str], rows: int, problems: int, batch_size: int) -> dict:
    """Both sweeps, stage by stage, alternating which setting goes first."""
    from factory.sources import load_problems

    require_data()
    made = recipes(batch_size)
    test = load_problems(made["new"].source, made["new"].dataset)["test"][:problems]
    seconds = {s: {"train": 0.0, "eval": 0.0} for s in SETTINGS}
    trained = {s: {} for s in SETTINGS}
    span, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as name:
        tmp = Path(name)
        dataset = subset(made["new"], configs, rows, tmp)
        for i, config in enumerate(configs):
            for setting in SETTINGS if i % 2 == 0 else SETTINGS[::-1]:
                out = tmp / setting / config
                took, metrics = train(made[setting], config, dataset, out, setting == "old")
                seconds[setting]["train"] += took
                trained[setting][config] = (out / "adapter", metrics)
        evaluations = {}
        for setting in SETTINGS[::-1]:  # the new one first: the old one warmed up training
            students = {"base": None, **{c: a for c, (a, _) in trained[setting].items()}}
            run = evaluate_new if setting == "new" else evaluate_old
            took, evaluations[setting] = run(made[setting], students, test, tmp / f"e-{setting}")
            seconds[setting]["eval"] += took
    return summarize(made, trained, evaluations, seconds, cpu_share(span, cpu), rows, problems)


def summarize(made, trained, evaluations, seconds, share, rows: int, problems: int) -> dict:
    for times in seconds.values():
        times["total"] = times["train"] + times["eval"]
    return {
        "configs": list(trained["new"]),
        "rows": rows,
        "problems": problems,
        "max_new_tokens": made["new"].eval.max_new_tokens,
        "eval": {s: made[s].eval.model_dump() for s in SETTINGS},
        "seconds": seconds,
        "cpu_share": share,
        "precision": {s: next(iter(trained[s].values()))[1]["precision"] for s in SETTINGS},
        "train_loss": {
            s: {c: m["train_loss"] for c, (_, m) in trained[s].items()} for s in SETTINGS
        },
        "accuracy": {
            s: {label: m["accuracy"] for label, m in evaluations[s].items()} for s in SETTINGS
        },
        "eval_dtype": {s: evaluations[s]["base"]["dtype"] for s in SETTINGS},
        "speedup": {k: seconds["old"][k] / seconds["new"][k] for k in ("train", "eval", "total")},
    }


def report(s: dict) -> str:
    t, up = s["seconds"], s["speedup"]
    lines = [
        f"sweep speed: smollm2-135m on {', '.join(s['configs'])}, {s['rows']} rows each, 1 epoch;"
        f" base + 3 adapters on {s['problems']} SVAMP test problems, max_new_tokens"
        f" {s['max_new_tokens']}",
        f"{'setting':<8}{'train s':>9}{'eval s':>9}{'total s':>9}  training, evaluation",
    ]
    for setting in SETTINGS:
        e = s["eval"][setting]
        how = (
            "one call per student"
            if setting == "old"
            else "evaluate_adapters (merged, one at a time, on a CPU)"
        )
        lines.append(
            f"{setting:<8}{t[setting]['train']:>9.0f}{t[setting]['eval']:>9.0f}"
            f"{t[setting]['total']:>9.0f}  {s['precision'][setting]};"
            f" {s['eval_dtype'][setting]}, batch {e['batch_size']}, {how}"
        )
    lines.append(
        f"speed-up, old / new: training {up['train']:.2f}x, evaluation {up['eval']:.2f}x,"
        f" whole sweep {up['total']:.2f}x (cpu share {s['cpu_share']:.2f})"
    )
    for setting in SETTINGS:
        acc = ", ".join(f"{k} {100 * v:.0f}%" for k, v in s["accuracy"][setting].items())
        loss = ", ".join(f"{v:.3f}" for v in s["train_loss"][setting].values())
        lines.append(f"{setting}: accuracy {acc}; train loss {loss}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=CONFIGS, help="three svamp-paper configs")
    parser.add_argument("--rows", type=int, default=200, help="training rows per config")
    parser.add_argument("--problems", type=int, default=100, help="SVAMP test problems")
    parser.add_argument("--batch-size", type=int, default=64, help="new setting's eval batch")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    quiet_warnings()
    summary = benchmark(args.configs.split(","), args.rows, args.problems, args.batch_size)
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
