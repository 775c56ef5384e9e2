"""Does evaluating in bf16 change accuracy? The same adapter in float32 and in bf16, paired.

Evaluates one trained SmolLM2-135M-Instruct adapter (by default the `gpt-4o-cot-L3` student of
`recipes/svamp-paper.yaml`, trained with `cot-factory train ... --config gpt-4o-cot-L3` into the
bench home) on the SVAMP test problems, greedy, the recipe's `max_new_tokens`, three ways:
float32; bf16 with the adapter unmerged through PEFT (`factory.evaluate.load_students`); and
bf16 with the adapter merged into the float32 weights first, then the model cast to bf16 (the
update rounded once into the weights). The problems are cut into the batches evaluation forms,
and each batch is evaluated every way back to back, rotating which goes first, so the timing
ratios are fair too.

Paired on the same problems, each bf16 way against float32: b = right in float32 only, c = right
in the other only. The difference in accuracy is (c - b) / n with the Agresti-Min 95% interval,
and the exact McNemar p-value is the two-sided binomial test of b against b + c
(`factory.stats`).

    .venv/bin/python bench/bf16_accuracy.py [--adapter DIR] [--problems 300] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

from eval_batching import HOME, RECIPE, STUDENT, chunks, svamp_test_problems

MODES = {  # name -> (dtype, adapter merged into the weights)
    "float32": ("float32", False),
    "bfloat16": ("bfloat16", False),
    "bfloat16-merged": ("bfloat16", True),
}
BASELINE = "float32"
CONFIG = "gpt-4o-cot-L3"


def default_adapter() -> Path:
    """The newest svamp-paper `gpt-4o-cot-L3` student trained into the bench home (a recipe
    whose schema or data changed since trains into a new run folder, so look at them all)."""
    found = sorted(
        HOME.glob(f"runs/svamp-paper-*/students/{STUDENT}/{CONFIG}/seed-0/adapter"),
        key=lambda p: p.stat().st_mtime,
    )
    return found[-1] if found else HOME / "runs" / "svamp-paper-*" / CONFIG


def load(adapter: Path, dtype: str, merged: bool):
    """(model, tokenizer, names) as `load_students` gives them; `merged`: the adapter merged into
    the float32 weights first (exact), then the model cast to `dtype` (rounded once)."""
    import torch

    from factory.evaluate import load_students

    if not merged:
        return load_students(STUDENT, {"student": adapter}, HOME, dtype)
    model, tokenizer, _ = load_students(STUDENT, {"student": adapter}, HOME, "float32")
    return model.merge_and_unload().to(getattr(torch, dtype)).eval(), tokenizer, {"student": None}


def run(adapter: Path, n: int, batch_size: int, tmp: Path) -> dict:
    """Every mode over every batch, rotating which goes first; predictions by mode."""
    from factory.evaluate import evaluate_students
    from factory.paths import PREDICTIONS
    from factory.recipe import load_recipe

    task, problems = svamp_test_problems(n)
    spec = load_recipe(RECIPE).eval.model_copy(update={"batch_size": batch_size})
    models = {mode: load(adapter, *how) for mode, how in MODES.items()}
    seconds, predictions = dict.fromkeys(MODES, 0.0), {m: [] for m in MODES}
    order = list(MODES)
    for j, chunk in enumerate(chunks(problems, batch_size)):
        for mode in order[j % len(order) :] + order[: j % len(order)]:
            out = tmp / f"{mode}-{j}"
            start = time.perf_counter()
            evaluate_students(*models[mode], chunk, task, spec, {"student": out})
            seconds[mode] += time.perf_counter() - start
            rows = (out / PREDICTIONS).read_text().splitlines()
            predictions[mode] += [json.loads(line) for line in rows]
    return {"spec": spec.model_dump(), "seconds": seconds, "predictions": predictions}


def paired(base: list[dict], other: list[dict]) -> dict:
    """The 2x2 table of two modes on the same problems, the difference and McNemar's p."""
    from factory.stats import mcnemar_exact, paired_interval

    pairs = list(zip(*(sorted(p, key=lambda r: r["id"]) for p in (base, other)), strict=True))
    b = sum(x["correct"] and not y["correct"] for x, y in pairs)
    c = sum(y["correct"] and not x["correct"] for x, y in pairs)
    n = len(pairs)
    return {
        "problems": n,
        "both": sum(x["correct"] and y["correct"] for x, y in pairs),
        "baseline_only": b,
        "other_only": c,
        "difference": (c - b) / n,
        "difference_ci95": paired_interval(c - b, b + c, n),
        "mcnemar_p": mcnemar_exact(b, c),
        "outputs_differ": sum(x["output"] != y["output"] for x, y in pairs),
        "answers_differ": sum(x["predicted_answer"] != y["predicted_answer"] for x, y in pairs),
    }


def report(s: dict) -> str:
    t, preds = s["seconds"], s["predictions"]
    n = len(preds[BASELINE])
    lines = [
        f"bf16 accuracy: {s['adapter']} on {n} SVAMP test problems, greedy, max_new_tokens"
        f" {s['spec']['max_new_tokens']}, batch {s['spec']['batch_size']}",
        f"{'mode':<16} {'correct':>9} {'accuracy':>9} {'seconds':>8} {'speed':>6} {'truncated':>9}",
    ]
    for mode in MODES:
        right = sum(p["correct"] for p in preds[mode])
        cut = sum(p["finish_reason"] == "length" for p in preds[mode])
        lines.append(
            f"{mode:<16} {right:>5}/{n:<3} {100 * right / n:>8.1f}% {t[mode]:>8.0f}"
            f" {t[BASELINE] / t[mode]:>5.2f}x {cut:>9}"
        )
    for mode, p in s["paired"].items():
        low, high = p["difference_ci95"]
        lines.append(
            f"{mode} vs {BASELINE}: both right {p['both']}, {BASELINE} only"
            f" {p['baseline_only']}, {mode} only {p['other_only']}; difference"
            f" {100 * p['difference']:+.1f} points (95% CI {100 * low:+.1f} to {100 * high:+.1f}),"
            f" exact McNemar p = {p['mcnemar_p']:.3f}; outputs differ {p['outputs_differ']}/{n},"
            f" extracted answers differ {p['answers_differ']}/{n}"
        )
    return "\n".join(lines)


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
    preds = result["predictions"]
    versus = {m: paired(preds[BASELINE], preds[m]) for m in MODES if m != BASELINE}
    summary = {"adapter": str(adapter), **result, "paired": versus}
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
