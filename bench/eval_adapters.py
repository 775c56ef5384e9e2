"""Several students of one base model: one mixed-adapter batch against one student at a time.

The base SmolLM2-135M-Instruct and `--adapters` LoRA students are evaluated on the first
`--problems` SVAMP test problems, greedy, the recipe's `max_new_tokens`, in `--dtype`, three
ways, each after its own model loading (timed: it is part of the cost):

1. separate: `evaluated` per student, one after another (one model load and one `evaluate`
   each), at batch `--batch-size`;
2. together: `evaluate_adapters` on all of them, batches of `--batch-size` problems, so each
   `generate` holds students x batch rows, PEFT choosing each row's adapter;
3. together-small: `evaluate_adapters` with batches of `--batch-size / students` problems, so
   each `generate` holds as many rows as a separate call.

The adapters default to every svamp-paper student trained into the bench home, repeated under
new labels up to `--adapters` (a repeated adapter costs the same: PEFT runs every label's LoRA
on its own rows). Each repeat runs the three in rotating order; outputs of every student must
match between the ways (the script counts those that do not).

    .venv/bin/python bench/eval_adapters.py [--adapters 3] [--problems 64] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from eval_batching import HOME, RECIPE, STUDENT, svamp_test_problems

WAYS = ("separate", "together", "together-small")


def students(count: int) -> dict[str, Path | None]:
    """The base and `count` adapter labels, cycling through the trained svamp-paper students."""
    found = sorted(HOME.glob(f"runs/svamp-paper-*/students/{STUDENT}/*/seed-0/adapter"))
    if not found:
        raise SystemExit(f"no trained svamp-paper student under {HOME}: see bench/README.md")
    return {
        "base": None,
        **{f"s{i}-{found[i % len(found)].parts[-3]}": found[i % len(found)] for i in range(count)},
    }


def run_way(way: str, chosen: dict, problems, task, spec, tmp: Path) -> tuple[float, dict]:
    """One way, timed from model loading to the last metrics file; label -> predictions."""
    from factory.evaluate import evaluate_adapters, evaluated
    from factory.paths import PREDICTIONS

    outs = {label: tmp / label for label in chosen}
    start = time.perf_counter()
    if way == "separate":
        for label, adapter in chosen.items():
            evaluated(STUDENT, adapter, problems, task, spec, outs[label], HOME, label)
    else:
        size = spec.batch_size if way == "together" else max(1, spec.batch_size // len(chosen))
        small = spec.model_copy(update={"batch_size": size})
        evaluate_adapters(STUDENT, chosen, problems, task, small, outs, HOME)
    seconds = time.perf_counter() - start
    read = {label: (out / PREDICTIONS).read_text().splitlines() for label, out in outs.items()}
    return seconds, {label: [json.loads(line) for line in rows] for label, rows in read.items()}


def benchmark(count: int, n: int, dtype: str, batch_size: int, repeats: int) -> dict:
    from factory.recipe import load_recipe

    task, problems = svamp_test_problems(n)
    spec = load_recipe(RECIPE).eval.model_copy(update={"dtype": dtype, "batch_size": batch_size})
    chosen = students(count)
    seconds, outputs = {w: [] for w in WAYS}, {}
    with tempfile.TemporaryDirectory(prefix="bench-adapters-") as name:
        tmp = Path(name)
        run_way("together", chosen, problems[:4], task, spec, tmp / "warm")  # untimed
        for i in range(repeats):
            for way in WAYS[i % 3 :] + WAYS[: i % 3]:
                took, outputs[way] = run_way(way, chosen, problems, task, spec, tmp / f"{way}{i}")
                seconds[way].append(took)
    differ = {
        way: sum(
            a["output"] != b["output"]
            for label in chosen
            for a, b in zip(outputs[way][label], outputs["separate"][label], strict=True)
        )
        for way in WAYS
    }
    median = {w: statistics.median(seconds[w]) for w in WAYS}
    return {
        "students": list(chosen),
        "problems": n,
        "dtype": dtype,
        "batch_size": batch_size,
        "max_new_tokens": spec.max_new_tokens,
        "repeats": repeats,
        "seconds": median,
        "all_seconds": seconds,
        "answers_per_s": {w: len(chosen) * n / median[w] for w in WAYS},
        "speedup": {w: median["separate"] / median[w] for w in WAYS},
        "outputs_differ": differ,
    }


def report(s: dict) -> str:
    k, n, b = len(s["students"]), s["problems"], s["batch_size"]
    rows = {"separate": f"{b} rows", "together": f"{k * b} rows", "together-small": f"{b} rows"}
    lines = [
        f"eval adapters: {STUDENT} base + {k - 1} adapters ({', '.join(s['students'])}) on {n}"
        f" SVAMP test problems, {s['dtype']}, max_new_tokens {s['max_new_tokens']},"
        f" median of {s['repeats']} repeat(s)",
        f"{'way':<16}{'seconds':>9}{'answers/s':>11}{'speed-up':>10}{'rows per call':>15}"
        f"{'differ':>8}",
    ]
    for way in WAYS:
        lines.append(
            f"{way:<16}{s['seconds'][way]:>9.1f}{s['answers_per_s'][way]:>11.2f}"
            f"{s['speedup'][way]:>9.2f}x{rows[way]:>15}{s['outputs_differ'][way]:>8}"
        )
    lines.append(f"differ: of the {k * n} answers, those unlike the separate evaluation's")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapters", type=int, default=3, help="adapter students (+ the base)")
    parser.add_argument("--problems", type=int, default=64, help="SVAMP test problems")
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--batch-size", type=int, default=64, help="problems per batch")
    parser.add_argument("--repeats", type=int, default=1, help="rotating repeats; medians")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    summary = benchmark(args.adapters, args.problems, args.dtype, args.batch_size, args.repeats)
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
