"""Stage 6, evaluate: a model (or base + adapter) on held-out problems.

Greedy batched generation with left padding (`factory.inference`), the same answer extractor as
verification, accuracy with a 95% Wilson interval, and every prediction kept.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from factory.answers import extract_answer, is_correct
from factory.files import write_json, write_jsonl
from factory.paths import EVAL_METRICS, PREDICTIONS
from factory.questions import student_messages
from factory.recipe import EvalSpec
from factory.sources import Problem
from factory.stats import wilson_interval

log = logging.getLogger(__name__)


def load_student(model: str, adapter: Path | str | None, home: Path):
    """A model ready to generate: the base, with the adapter merged in when there is one."""
    from factory.inference import load_for_generation

    base, tokenizer = load_for_generation(model, home)
    if adapter is None:
        return base, tokenizer
    from peft import PeftModel
    from transformers import AutoTokenizer

    if (Path(adapter) / "tokenizer_config.json").is_file():  # the template training used
        tokenizer = AutoTokenizer.from_pretrained(adapter, padding_side="left")
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    return merged.eval(), tokenizer


def evaluated(model: str, adapter, problems, task: str, spec, out: Path, home: Path, label: str):
    """The metrics in `out`, after evaluating `model` (with `adapter`) there if they are not."""
    if (metrics := read_metrics(out)) is not None:
        return metrics
    loaded, tokenizer = load_student(model, adapter, home)
    return evaluate(loaded, tokenizer, problems, task, spec, out, label=label)


def evaluate_recipe(recipe, model: str | None, adapter: Path | None, out: Path, home: Path):
    """Any model, or any adapter folder (the base defaults to the adapter's), on the recipe's
    test problems as its source gives them; predictions and metrics go to `out`."""
    from factory.models import adapter_base
    from factory.sources import SourceError, load_problems

    model = model or adapter_base(adapter)
    problems = load_problems(recipe.source, recipe.dataset).get("test")
    if not problems:
        raise SourceError(f"{recipe.path}: no test split to evaluate on")
    loaded, tokenizer = load_student(model, adapter, home)
    label = Path(str(adapter or model)).name
    return evaluate(loaded, tokenizer, problems, recipe.source.task, recipe.eval, out, label=label)


def evaluate(
    model,
    tokenizer,
    problems: list[Problem],
    task: str,
    spec: EvalSpec,
    out: Path | None = None,
    label: str = "model",
) -> dict[str, Any]:
    """Accuracy on `problems`; predictions and metrics are written to `out` when given."""
    from factory.inference import generate_batch

    problems = problems[: spec.limit] if spec.limit else problems
    # Similar lengths batch together: less padding, same greedy outputs.
    order = sorted(range(len(problems)), key=lambda i: len(problems[i].question))
    outputs: dict[int, dict] = {}
    batches = [order[i : i + spec.batch_size] for i in range(0, len(order), spec.batch_size)]
    for batch in tqdm(batches, desc=f"eval {label}", unit="batch"):
        chats = [
            student_messages(problems[i].question, task=task, choices=problems[i].choices)
            for i in batch
        ]
        responses = generate_batch(model, tokenizer, chats, max_new_tokens=spec.max_new_tokens)
        outputs.update(zip(batch, responses, strict=True))
    predictions = [_prediction(problems[i], outputs[i], task) for i in range(len(problems))]
    metrics = summarize(predictions)
    if out is not None:
        write_results(out, metrics, predictions)
    return metrics


def summarize(predictions: list[dict]) -> dict[str, Any]:
    correct, total = sum(p["correct"] for p in predictions), len(predictions)
    low, high = wilson_interval(correct, total)
    return {
        "accuracy": correct / total if total else 0.0,
        "ci95": [round(low, 4), round(high, 4)],
        "correct": correct,
        "total": total,
        "answered": sum(p["predicted_answer"] is not None for p in predictions),
        "truncated": sum(p["finish_reason"] == "length" for p in predictions),
    }


def _prediction(problem: Problem, response: dict, task: str) -> dict:
    predicted = extract_answer(response["text"], task, problem.choices)
    return {
        "id": problem.id,
        "question": problem.question,
        "answer": problem.answer,
        "output": response["text"],
        "predicted_answer": predicted,
        "correct": is_correct(predicted, problem.answer, task),
        "finish_reason": response["finish_reason"],
        "completion_tokens": response["usage"]["completion_tokens"],
    }


def write_results(out: Path, metrics: dict, predictions: list[dict]) -> None:
    """Predictions first, metrics last: the metrics file says the evaluation is complete."""
    write_jsonl(out / PREDICTIONS, predictions)
    write_json(out / EVAL_METRICS, metrics)


def read_metrics(out: Path) -> dict | None:
    """The metrics of a finished evaluation in `out`, or None (none yet, or a torn file)."""
    try:
        return json.loads((out / EVAL_METRICS).read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        log.warning("%s is torn: the evaluation is run again", out / EVAL_METRICS)
        return None
