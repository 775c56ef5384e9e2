"""What a student's answers score: each response read by the answer extractor into a prediction,
accuracy with a 95% Wilson interval, and the thinking of a student that thinks; written and read
back as `predictions.jsonl` and `eval_results.json`. In-process (factory/evaluate.py) and served
(factory/served.py) answers are scored alike."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from factory.answers import extract_answer, is_correct
from factory.files import write_json, write_jsonl
from factory.paths import EVAL_METRICS, PREDICTIONS
from factory.sources import Problem
from factory.stats import wilson_interval

log = logging.getLogger(__name__)


def score(problems, outputs: dict, task: str, out: Path | None, facts: dict) -> dict:
    """Metrics of one student's outputs (problem index -> response), with `facts` on how they
    were made (the dtype, the answer bound), written to `out` if given."""
    predictions = [prediction(problems[i], outputs[i], task) for i in range(len(problems))]
    metrics = {**summarize(predictions), **facts}
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
        **_thinking(predictions),
    }


def _thinking(predictions: list[dict]) -> dict[str, Any]:
    """For a student that thinks (`<think>`...): the mean thinking tokens per answer, and the
    answers whose thinking never closed (cut off while thinking: no answer is read from them)."""
    tokens = [p["thinking_tokens"] for p in predictions if p.get("thinking_tokens") is not None]
    if not tokens:
        return {}
    return {
        "mean_thinking_tokens": round(sum(tokens) / len(predictions), 1),
        "thinking_answers": len(tokens),
        "thinking_cut": sum(p.get("thinking_closed") is False for p in predictions),
    }


def prediction(problem: Problem, response: dict, task: str) -> dict:
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
        **_thought(response),
    }


def _thought(response: dict) -> dict:
    """A thinking answer's thinking tokens and whether its thinking closed; nothing otherwise."""
    tokens = response["usage"].get("reasoning_tokens")
    if tokens is None:
        return {}
    return {"thinking_tokens": tokens, "thinking_closed": response.get("thinking_closed", True)}


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
