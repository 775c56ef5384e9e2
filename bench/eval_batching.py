"""Evaluation throughput by batch size and dtype, with the real `factory.evaluate`.

Evaluates SmolLM2-135M-Instruct (`smollm2-135m`; the base model, or `--adapter` merged in) on the
first `--problems` SVAMP test problems of `recipes/svamp-paper.yaml`, greedy, `--max-new-tokens`
each, in every mode of `--modes`: `dtype:batch_size[:segment]`, e.g. `float32:16:0` (the path
before this work, the baseline: the first mode), `bfloat16:64:0`, `bfloat16:64` (rows leave the
batch as they finish, every `SEGMENT_TOKENS` tokens, and the KV cache grows in place; `:0`
decodes as before: whole batches, transformers' own cache). A model is loaded once per
dtype. The problems are cut into chunks of the largest batch size (sorted by question length, as
`evaluate` sorts them, so every mode forms the same batches it would over all problems), and
each chunk is evaluated in every mode back to back, rotating which goes first, so the machine's
noise falls on all modes alike, after an untimed warm-up batch per dtype (the first large batch
in a process runs up to twice as slow). Outputs that differ from the baseline's are counted and
shown, not fatal. `cpu share` is process CPU time over wall time x torch threads: well under 1
means other work took the cores.

    .venv/bin/python bench/eval_batching.py [--problems 64] [--modes float32:16:0,...] [--repeats 1]
"""

from __future__ import annotations

import argparse
import contextlib
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


def measure(model, tokenizer, problems, task: str, mode: tuple, tokens: int, out: Path):
    """One `evaluate` call in `mode` (dtype, batch size, segment); its predictions are read
    back from `out`."""
    from factory import inference
    from factory.evaluate import evaluate
    from factory.paths import PREDICTIONS
    from factory.recipe import EvalSpec

    _, batch_size, segment = mode
    spec = EvalSpec(batch_size=batch_size, max_new_tokens=tokens)
    with decoding_as_before(segment == 0):
        inference.SEGMENT_TOKENS = segment or inference.SEGMENT_TOKENS
        start, cpu = time.perf_counter(), time.process_time()
        evaluate(model, tokenizer, problems, task, spec, out)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rows = [json.loads(line) for line in (out / PREDICTIONS).read_text().splitlines()]
    return Measure(seconds, cpu, rows)


@contextlib.contextmanager
def decoding_as_before(active: bool):
    """With `active`, `generate_batch` decodes as it did before this work: each batch in one
    piece until its longest answer ends (no row leaves early) and with transformers' own KV
    cache (`factory.kv_cache.growing_cache` off)."""
    from factory import inference, kv_cache

    segment, cache = inference.SEGMENT_TOKENS, kv_cache.growing_cache
    if active:
        inference.SEGMENT_TOKENS, kv_cache.growing_cache = 1 << 30, lambda model: None
    try:
        yield
    finally:
        inference.SEGMENT_TOKENS, kv_cache.growing_cache = segment, cache


def chunks(problems: list, size: int) -> list[list]:
    """The batches `evaluate` forms: problems sorted by question length, `size` at a time."""
    ordered = sorted(problems, key=lambda p: len(p.question))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def parse_modes(text: str) -> dict[str, tuple[str, int, int]]:
    """`float32:16:0,bfloat16:64` -> {"float32:16:0": ("float32", 16, 0), "bfloat16:64":
    ("bfloat16", 64, SEGMENT_TOKENS)}, in order. The third field is the segment finished rows
    leave the batch after (`factory.inference.generate_batch`); 0 decodes as evaluation did
    before this work (`decoding_as_before`)."""
    from factory.inference import SEGMENT_TOKENS

    modes = {}
    for mode in text.split(","):
        dtype, size, *segment = mode.split(":")
        if dtype not in ("float32", "bfloat16") or len(segment) > 1:
            raise SystemExit(f"bad mode {mode!r}: float32|bfloat16:BATCH[:SEGMENT]")
        modes[mode] = (dtype, int(size), int(segment[0]) if segment else SEGMENT_TOKENS)
    return modes


def run_repeat(models: dict, problems, task, modes: dict, tokens: int, tmp: Path, i: int):
    """Every mode over every chunk, chunk by chunk, rotating which goes first."""
    totals = {mode: Measure() for mode in modes}
    largest = max(size for _, size, _ in modes.values())
    for j, chunk in enumerate(chunks(problems, largest)):
        order = list(modes)[(i + j) % len(modes) :] + list(modes)[: (i + j) % len(modes)]
        for mode in order:
            out = tmp / f"{mode.replace(':', '-')}-{i}-{j}"
            model = models[modes[mode][0]]
            totals[mode].add(measure(*model, chunk, task, modes[mode], tokens, out))
    return totals


def benchmark(n: int, modes: dict, tokens: int, repeats: int, adapter: Path | None) -> dict:
    """Load a model per dtype, warm each up, then the interleaved repeats."""
    from factory.evaluate import load_student

    task, problems = svamp_test_problems(n)
    dtypes = sorted({dtype for dtype, _, _ in modes.values()})
    models = {dtype: load_student(STUDENT, adapter, HOME, dtype) for dtype in dtypes}
    results = Results({mode: [] for mode in modes})
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as name:
        tmp = Path(name)
        largest = max(size for _, size, _ in modes.values())
        for dtype in dtypes:  # untimed: the first large batch in a process runs far slower
            warm = (dtype, largest, 0)
            measure(*models[dtype], problems[:largest], task, warm, 16, tmp / f"warm-{dtype}")
        for i in range(repeats):
            for mode, m in run_repeat(models, problems, task, modes, tokens, tmp, i).items():
                results.modes[mode].append(m)
    return summarize(results, n, tokens, repeats, adapter)


def differences(batched: list[dict], single: list[dict]) -> dict:
    """Problems whose output text, extracted answer or correctness differ between two modes."""
    pairs = list(zip(batched, single, strict=True))
    return {
        "output": [b["id"] for b, s in pairs if b["output"] != s["output"]],
        "answer": [b["id"] for b, s in pairs if b["predicted_answer"] != s["predicted_answer"]],
        "correct": [b["id"] for b, s in pairs if b["correct"] != s["correct"]],
    }


def summarize(results: Results, n: int, tokens: int, repeats: int, adapter) -> dict:
    """Medians per mode, each mode's speed-up over the first, and how far outputs agree."""
    import torch

    modes, threads = {}, torch.get_num_threads()
    baseline = next(iter(results.modes))
    by_id = {
        mode: sorted(measures[-1].predictions, key=lambda p: p["id"])
        for mode, measures in results.modes.items()
    }
    for mode, measures in results.modes.items():
        seconds, last = results.median(mode, "seconds"), measures[-1]
        modes[mode] = {
            "seconds": seconds,
            "problems_per_s": n / seconds,
            "speedup": results.median(baseline, "seconds") / seconds,
            "generated_tokens": last.tokens,
            "generated_tokens_per_s": last.tokens / seconds,
            "correct": sum(p["correct"] for p in last.predictions),
            "truncated": sum(p["finish_reason"] == "length" for p in last.predictions),
            "cpu_share": results.median(mode, "cpu_seconds") / seconds / threads,
            "differ": differences(by_id[mode], by_id[baseline]),
            "examples": _examples(by_id[mode], by_id[baseline]),
            "all_seconds": [m.seconds for m in measures],
        }
    return {
        "student": STUDENT + (f" + {adapter}" if adapter else " (base)"),
        "problems": n,
        "max_new_tokens": tokens,
        "repeats": repeats,
        "threads": threads,
        "baseline": baseline,
        "modes": modes,
    }


def _examples(batched: list[dict], single: list[dict], limit: int = 3) -> list[dict]:
    """A few differing outputs, from a little before where they part, for the eye."""
    pairs = [(b, s) for b, s in zip(batched, single, strict=True) if b["output"] != s["output"]]
    examples = []
    for b, s in pairs[:limit]:
        parted = len(os.path.commonprefix([b["output"], s["output"]]))
        cut = slice(max(0, parted - 40), parted + 80)
        examples.append({"id": b["id"], "batched": b["output"][cut], "single": s["output"][cut]})
    return examples


def report(s: dict) -> str:
    """The summary as a compact table."""
    n, base = s["problems"], s["baseline"]
    lines = [
        f"eval throughput: {s['student']} on {n} SVAMP test problems, greedy,"
        f" max_new_tokens {s['max_new_tokens']}, median of {s['repeats']} repeat(s)",
        f"{'mode':<16}{'seconds':>9}{'problems/s':>12}{'speed-up':>10}{'gen tokens':>12}"
        f"{'gen tok/s':>11}{'correct':>9}{'truncated':>11}{'differ':>8}{'cpu share':>11}",
    ]
    for mode, m in s["modes"].items():
        lines.append(
            f"{mode:<16}{m['seconds']:>9.1f}{m['problems_per_s']:>12.2f}{m['speedup']:>9.2f}x"
            f"{m['generated_tokens']:>12}{m['generated_tokens_per_s']:>11.1f}"
            f"{m['correct']:>9}{m['truncated']:>11}{len(m['differ']['output']):>8}"
            f"{m['cpu_share']:>11.2f}"
        )
    lines += [
        f"speed-up: {base}'s time / the mode's; differ: outputs that differ from {base}'s",
        f"cpu share: process CPU seconds / (wall seconds x {s['threads']} torch threads);"
        " well under 1.00 means the machine was busy with other work",
    ]
    for mode, m in s["modes"].items():
        d = m["differ"]
        if d["output"]:
            lines.append(
                f"{mode} vs {base}: {len(d['output'])}/{n} outputs, {len(d['answer'])}/{n}"
                f" extracted answers, {len(d['correct'])}/{n} correctness differ"
            )
        for e in m["examples"][:2]:
            lines += [
                f"  {e['id']} {mode}: {e['batched']!r}",
                f"  {e['id']} {base}: {e['single']!r}",
            ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=64, help="SVAMP test problems")
    parser.add_argument(
        "--modes",
        default="float32:16:0,bfloat16:64:0,bfloat16:64",
        help="dtype:batch_size[:segment], comma-separated; the first is the baseline",
    )
    parser.add_argument("--max-new-tokens", type=int, default=96, help="tokens per answer")
    parser.add_argument("--adapter", type=Path, help="evaluate this adapter, merged")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats; medians")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    modes = parse_modes(args.modes)
    summary = benchmark(args.problems, modes, args.max_new_tokens, args.repeats, args.adapter)
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
