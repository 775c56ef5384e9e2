"""Batched evaluation against one prompt at a time, with the real `factory.evaluate`.

Evaluates SmolLM2-135M-Instruct (`smollm2-135m`, the base model: no adapter) on the first
`--problems` SVAMP test problems of `recipes/svamp-paper.yaml`, greedy, `--max-new-tokens` each,
with `eval.batch_size` 16 (left-padded batches of similar lengths, one `generate` call each) and
`eval.batch_size` 1. The problems are cut into the batches `evaluate` forms, and each batch is
evaluated both ways back to back, alternating which goes first, so the machine's noise falls on
both modes alike. Greedy decoding should give the same outputs either way; outputs and
correctness that differ are counted and shown, not fatal. `cpu share` is process CPU time over
wall time x torch threads: well under 1 means other work took the cores.

    .venv/bin/python bench/eval_batching.py [--problems 32] [--batch-size 16] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
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

DATA = ROOT.parent / "shared" / "data"
RECIPE = ROOT / "recipes" / "svamp-paper.yaml"
HOME = Path(tempfile.gettempdir()) / "cot-factory-bench-home"  # the converted model, reused
STUDENT = "smollm2-135m"


@dataclass
class Measure:
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    predictions: list[dict] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(p["completion_tokens"] for p in self.predictions)

    def add(self, other: Measure) -> None:
        self.seconds += other.seconds
        self.cpu_seconds += other.cpu_seconds
        self.predictions += other.predictions


@dataclass
class Results:
    modes: dict[str, list[Measure]] = field(default_factory=dict)

    def median(self, mode: str, attr: str) -> float:
        return statistics.median(getattr(m, attr) for m in self.modes[mode])


def svamp_test_problems(n: int):
    """The first `n` SVAMP test problems, as the svamp-paper recipe reads them."""
    test = Path(os.environ.setdefault("SVAMP_DIR", str(DATA / "svamp"))) / "test.jsonl"
    if not test.is_file():
        raise SystemExit(f"needs the shared SVAMP data; missing: {test}")
    from factory.recipe import load_recipe
    from factory.sources import load_problems

    recipe = load_recipe(RECIPE)
    problems = load_problems(recipe.source, recipe.dataset)["test"]
    if len(problems) < n:
        raise SystemExit(f"only {len(problems)} test problems, fewer than --problems {n}")
    return recipe.source.task, problems[:n]


def measure(model, tokenizer, problems, task: str, batch_size: int, tokens: int, out: Path):
    """One `evaluate` call; its predictions are read back from `out`."""
    from factory.evaluate import evaluate
    from factory.paths import PREDICTIONS
    from factory.recipe import EvalSpec

    spec = EvalSpec(batch_size=batch_size, max_new_tokens=tokens)
    start, cpu = time.perf_counter(), time.process_time()
    evaluate(model, tokenizer, problems, task, spec, out)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rows = [json.loads(line) for line in (out / PREDICTIONS).read_text().splitlines()]
    return Measure(seconds, cpu, rows)


def chunks(problems: list, size: int) -> list[list]:
    """The batches `evaluate` forms: problems sorted by question length, `size` at a time."""
    ordered = sorted(problems, key=lambda p: len(p.question))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def run_repeat(model, tokenizer, problems, task, modes: dict, tokens: int, tmp: Path, i: int):
    """Both modes over every chunk, chunk by chunk, alternating which goes first: the machine's
    noise falls on both alike. Each chunk is one batch for the batched mode."""
    totals = {mode: Measure() for mode in modes}
    for j, chunk in enumerate(chunks(problems, modes["batched"])):
        order = list(modes) if (i + j) % 2 == 0 else list(modes)[::-1]
        for mode in order:
            out = tmp / f"{mode}-{i}-{j}"
            totals[mode].add(measure(model, tokenizer, chunk, task, modes[mode], tokens, out))
    return totals


def benchmark(n: int, batch_size: int, tokens: int, repeats: int) -> dict:
    """Load the model once, warm up, then the interleaved repeats."""
    from factory.evaluate import load_student

    task, problems = svamp_test_problems(n)
    model, tokenizer = load_student(STUDENT, None, HOME)
    modes = {"batched": batch_size, "single": 1}
    results = Results({mode: [] for mode in modes})
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as name:
        tmp = Path(name)
        measure(model, tokenizer, problems[:2], task, 2, 8, tmp / "warmup")  # untimed
        for i in range(repeats):
            for mode, m in run_repeat(
                model, tokenizer, problems, task, modes, tokens, tmp, i
            ).items():
                results.modes[mode].append(m)
    return summarize(results, n, batch_size, tokens, repeats)


def differences(batched: list[dict], single: list[dict]) -> dict:
    """Problems whose output text, extracted answer or correctness differ between the modes."""
    pairs = list(zip(batched, single, strict=True))
    return {
        "output": [b["id"] for b, s in pairs if b["output"] != s["output"]],
        "answer": [b["id"] for b, s in pairs if b["predicted_answer"] != s["predicted_answer"]],
        "correct": [b["id"] for b, s in pairs if b["correct"] != s["correct"]],
    }


def summarize(results: Results, n: int, batch_size: int, tokens: int, repeats: int) -> dict:
    """Medians per mode, the speed-up, and how far the two modes' predictions agree."""
    import torch

    modes, threads = {}, torch.get_num_threads()
    for mode, measures in results.modes.items():
        seconds, last = results.median(mode, "seconds"), measures[-1]
        modes[mode] = {
            "seconds": seconds,
            "problems_per_s": n / seconds,
            "generated_tokens": last.tokens,
            "generated_tokens_per_s": last.tokens / seconds,
            "correct": sum(p["correct"] for p in last.predictions),
            "truncated": sum(p["finish_reason"] == "length" for p in last.predictions),
            "cpu_share": results.median(mode, "cpu_seconds") / seconds / threads,
            "all_seconds": [m.seconds for m in measures],
        }
    batched, single = (
        sorted(results.modes[m][-1].predictions, key=lambda p: p["id"])
        for m in ("batched", "single")
    )
    return {
        "student": STUDENT,
        "problems": n,
        "batch_size": batch_size,
        "max_new_tokens": tokens,
        "repeats": repeats,
        "threads": threads,
        "modes": modes,
        "speedup": modes["single"]["seconds"] / modes["batched"]["seconds"],
        "differ": differences(batched, single),
        "examples": _examples(batched, single),
    }


def _examples(batched: list[dict], single: list[dict], limit: int = 3) -> list[dict]:
    """A few differing outputs, cut short, for the eye."""
    pairs = [(b, s) for b, s in zip(batched, single, strict=True) if b["output"] != s["output"]]
    return [
        {"id": b["id"], "batched": b["output"][:160], "single": s["output"][:160]}
        for b, s in pairs[:limit]
    ]


def report(s: dict) -> str:
    """The summary as a compact table."""
    names = {"batched": f"batch size {s['batch_size']}", "single": "batch size 1"}
    d, n = s["differ"], s["problems"]
    lines = [
        f"eval batching: {s['student']} (base) on {n} SVAMP test problems, greedy,"
        f" max_new_tokens {s['max_new_tokens']}, median of {s['repeats']} repeat(s)",
        f"{'mode':<16}{'seconds':>9}{'problems/s':>12}{'gen tokens':>12}{'gen tok/s':>11}"
        f"{'correct':>9}{'truncated':>11}{'cpu share':>11}",
    ]
    for mode, name in names.items():
        m = s["modes"][mode]
        lines.append(
            f"{name:<16}{m['seconds']:>9.1f}{m['problems_per_s']:>12.2f}"
            f"{m['generated_tokens']:>12}{m['generated_tokens_per_s']:>11.1f}"
            f"{m['correct']:>9}{m['truncated']:>11}{m['cpu_share']:>11.2f}"
        )
    lines += [
        f"speed-up, batch {s['batch_size']} / batch 1: {s['speedup']:.2f}x"
        " (design note: about 5.5x at batch 16 on this CPU)",
        f"cpu share: process CPU seconds / (wall seconds x {s['threads']} torch threads);"
        " well under 1.00 means the machine was busy with other work",
        f"batched vs one at a time: {len(d['output'])}/{n} outputs differ,"
        f" {len(d['answer'])}/{n} extracted answers differ,"
        f" {len(d['correct'])}/{n} correctness differs",
    ]
    for e in s["examples"]:
        lines += [f"  {e['id']} batched: {e['batched']!r}", f"  {e['id']} single:  {e['single']!r}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=32, help="SVAMP test problems")
    parser.add_argument("--batch-size", type=int, default=16, help="the batched mode's size")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="tokens per answer")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats; medians")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    summary = benchmark(args.problems, args.batch_size, args.max_new_tokens, args.repeats)
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
