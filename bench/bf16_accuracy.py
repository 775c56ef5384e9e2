"""Does evaluating in bf16 change accuracy? The same adapter in float32 and in bf16, paired.

Evaluates one trained SmolLM2-135M-Instruct adapter (by default the `gpt-4o-cot-L3` student of
`recipes/svamp-paper.yaml`, trained with `cot-factory train ... --config gpt-4o-cot-L3` into the
bench home) on the SVAMP test problems, greedy, the recipe's `max_new_tokens`, once with the
model loaded in float32 and once in bf16, the adapter unmerged through PEFT as the pipeline
evaluates it (`factory.evaluate.load_students` and `evaluate_students`). The problems are cut
into the batches evaluation forms, and each batch is evaluated both ways back to back,
alternating which goes first, so the timing ratio is fair too.

Paired on the same problems: b = right in float32 only, c = right in bf16 only. The difference
in accuracy is (c - b) / n with the Agresti-Min 95% interval, and the exact McNemar p-value is
the two-sided binomial test of b against b + c (`factory.stats`).

    .venv/bin/python bench/bf16_accuracy.py [--adapter DIR] [--problems 300] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

from eval_batching import HOME, RECIPE, STUDENT, chunks, svamp_test_problems

DTYPES = ("float32", "bfloat16")
CONFIG = "gpt-4o-cot-L3"


def default_adapter() -> Path:
    """The newest svamp-paper `gpt-4o-cot-L3` student trained into the bench home (a recipe
    whose schema or data changed since trains into a new run folder, so look at them all)."""
    found = sorted(
        HOME.glob(f"runs/svamp-paper-*/students/{STUDENT}/{CONFIG}/seed-0/adapter"),
        key=lambda p: p.stat().st_mtime,
    )
    return found[-1] if found else HOME / "runs" / "svamp-paper-*" / CONFIG


def run(adapter: Path, n: int, batch_size: int, tmp: Path) -> dict:
    """Both dtypes over every batch, alternating which goes first; predictions by dtype."""
    from factory.evaluate import evaluate_students, load_students
    from factory.paths import PREDICTIONS
    from factory.recipe import load_recipe

    task, problems = svamp_test_problems(n)
    spec = load_recipe(RECIPE).eval.model_copy(update={"batch_size": batch_size})
    models = {d: load_students(STUDENT, {"student": adapter}, HOME, d) for d in DTYPES}
    seconds, predictions = dict.fromkeys(DTYPES, 0.0), {d: [] for d in DTYPES}
    for j, chunk in enumerate(chunks(problems, batch_size)):
        for dtype in DTYPES if j % 2 == 0 else DTYPES[::-1]:
            out = tmp / f"{dtype}-{j}"
            start = time.perf_counter()
            evaluate_students(*models[dtype], chunk, task, spec, {"student": out})
            seconds[dtype] += time.perf_counter() - start
            rows = (out / PREDICTIONS).read_text().splitlines()
            predictions[dtype] += [json.loads(line) for line in rows]
    return {"spec": spec.model_dump(), "seconds": seconds, "predictions": predictions}


def paired(predictions: dict[str, list[dict]]) -> dict:
    """The 2x2 table of the two dtypes on the same problems, the difference and McNemar's p."""
    from factory.stats import mcnemar_exact, paired_interval

    f32, bf16 = (sorted(predictions[d], key=lambda p: p["id"]) for d in DTYPES)
    pairs = list(zip(f32, bf16, strict=True))
    b = sum(x["correct"] and not y["correct"] for x, y in pairs)
    c = sum(y["correct"] and not x["correct"] for x, y in pairs)
    n = len(pairs)
    return {
        "problems": n,
        "correct": {d: sum(p["correct"] for p in predictions[d]) for d in DTYPES},
        "both": sum(x["correct"] and y["correct"] for x, y in pairs),
        "float32_only": b,
        "bfloat16_only": c,
        "difference": (c - b) / n,
        "difference_ci95": paired_interval(c - b, b + c, n),
        "mcnemar_p": mcnemar_exact(b, c),
        "outputs_differ": sum(x["output"] != y["output"] for x, y in pairs),
        "answers_differ": sum(x["predicted_answer"] != y["predicted_answer"] for x, y in pairs),
        "truncated": {
            d: sum(p["finish_reason"] == "length" for p in predictions[d]) for d in DTYPES
        },
    }


def truncated(predictions: dict[str, list[dict]]) -> dict[str, int]:
    return {d: sum(p["finish_reason"] == "length" for p in predictions[d]) for d in DTYPES}


def report(s: dict) -> str:
    t, p, n = s["seconds"], s["paired"], s["paired"]["problems"]
    low, high = p["difference_ci95"]
    acc = {d: p["correct"][d] / n for d in DTYPES}
    return "\n".join(
        [
            f"bf16 accuracy: {s['adapter']} on {n} SVAMP test problems, greedy, max_new_tokens"
            f" {s['spec']['max_new_tokens']}, batch {s['spec']['batch_size']}",
            f"float32: {p['correct']['float32']}/{n} ({100 * acc['float32']:.1f}%),"
            f" {t['float32']:.0f} s, {p['truncated']['float32']} truncated",
            f"bf16:    {p['correct']['bfloat16']}/{n} ({100 * acc['bfloat16']:.1f}%),"
            f" {t['bfloat16']:.0f} s, {p['truncated']['bfloat16']} truncated",
            f"paired: both right {p['both']}, float32 only {p['float32_only']}, bf16 only"
            f" {p['bfloat16_only']}; difference bf16 - float32 {100 * p['difference']:+.1f}"
            f" points (95% CI {100 * low:+.1f} to {100 * high:+.1f}),"
            f" exact McNemar p = {p['mcnemar_p']:.3f}",
            f"outputs differ: {p['outputs_differ']}/{n}, extracted answers differ:"
            f" {p['answers_differ']}/{n}",
            f"speed: bf16 / float32 time {t['float32'] / t['bfloat16']:.2f}x faster",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", type=Path, help="adapter folder (default: the L3 student)")
    parser.add_argument("--problems", type=int, default=300, help="SVAMP test problems")
    parser.add_argument("--batch-size", type=int, default=64, help="eval batch size")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    adapter = args.adapter or default_adapter()
    if not (adapter / "adapter_config.json").is_file():
        raise SystemExit(
            f"no adapter in {adapter}: train one first, e.g. `cot-factory train {RECIPE}"
            f" --home {HOME} --config {CONFIG}`"
        )
    with tempfile.TemporaryDirectory(prefix="bench-bf16-") as name:
        result = run(adapter, args.problems, args.batch_size, Path(name))
    summary = {"adapter": str(adapter), **result, "paired": paired(result["predictions"])}
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
