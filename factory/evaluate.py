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
from factory.precision import eval_dtype
from factory.questions import student_messages
from factory.recipe import EvalSpec
from factory.sources import Problem
from factory.stats import wilson_interval

log = logging.getLogger(__name__)
BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in `adapter_names`


def load_student(model: str, adapter: Path | str | None, home: Path, dtype: str = "float32"):
    """A model ready to generate, in `dtype`: the base, with the adapter loaded (unmerged, so
    its LoRA update is not rounded into bf16 weights) through PEFT when there is one."""
    model, tokenizer, _ = load_students(model, {"student": adapter}, home, dtype)
    return model, tokenizer


def evaluated(model: str, adapter, problems, task: str, spec, out: Path, home: Path, label: str):
    """The metrics in `out`, after evaluating `model` (with `adapter`) there if they are not:
    `evaluated_together` with one student, so it answers exactly as it would beside others."""
    together = evaluated_together(model, {label: (adapter, out)}, problems, task, spec, home)
    return together[label]


def evaluate_recipe(recipe, model: str | None, adapter: Path | None, out: Path, home: Path):
    """Any model, or any adapter folder (the base defaults to the adapter's), on the recipe's
    test problems as its source gives them; predictions and metrics go to `out`."""
    from factory.models import adapter_base
    from factory.sources import SourceError, load_problems

    model = model or adapter_base(adapter)
    problems = load_problems(recipe.source, recipe.dataset).get("test")
    if not problems:
        raise SourceError(f"{recipe.path}: no test split to evaluate on")
    label, spec = Path(str(adapter or model)).name, recipe.eval
    task, outs = recipe.source.task, {label: out}
    return evaluate_adapters(model, {label: adapter}, problems, task, spec, outs, home)[label]


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
    problems = problems[: spec.limit] if spec.limit else problems
    outputs = _generate(model, tokenizer, problems, task, spec, {label: None}, label)[label]
    return _score(problems, outputs, task, _dtype(model), out)


def evaluate_adapters(
    base_model: str,
    adapters: dict[str, Path | str | None],
    problems: list[Problem],
    task: str,
    spec: EvalSpec,
    outs: dict[str, Path] | None,
    home: Path,
) -> dict[str, dict[str, Any]]:
    """Several students of one base model evaluated together: `adapters` maps a label to an
    adapter folder, or to None for the base model itself. Each batch of `spec.batch_size`
    problems is ONE `generate` call with a row per problem per student, PEFT choosing each row's
    adapter (`adapter_names`), so the base weights are read once per decoding step for all of
    them. Every student sees the batches it would see alone, so its greedy outputs equal
    `evaluate` on it alone. Returns label -> metrics; `outs[label]` gets its predictions and
    metrics (as `evaluate` writes them)."""
    loaded = load_students(base_model, adapters, home, eval_dtype(spec.dtype))
    return evaluate_students(*loaded, problems, task, spec, outs)


def evaluate_students(
    model, tokenizer, names: dict, problems, task: str, spec: EvalSpec, outs=None
) -> dict[str, dict[str, Any]]:
    """`evaluate_adapters` on students already loaded by `load_students` (model, tokenizer,
    label -> PEFT adapter name)."""
    problems = problems[: spec.limit] if spec.limit else problems
    outputs = _generate(model, tokenizer, problems, task, spec, names, f"eval {len(names)}")
    outs = outs or {}
    return {
        label: _score(problems, outputs[label], task, _dtype(model), outs.get(label))
        for label in names
    }


def evaluated_together(
    base_model: str,
    students: dict[str, tuple[Path | str | None, Path]],
    problems: list[Problem],
    task: str,
    spec: EvalSpec,
    home: Path,
) -> dict[str, dict[str, Any]]:
    """`evaluated` for several students of one base model: `students` maps a label to (adapter
    folder or None for the base, out folder). Students whose `out` holds finished metrics are
    not evaluated again; the rest are evaluated together by `evaluate_adapters`. Returns label
    -> metrics for all of them."""
    done = {label: read_metrics(out) for label, (_, out) in students.items()}
    owed = {label: students[label] for label, metrics in done.items() if metrics is None}
    if owed:
        adapters = {label: adapter for label, (adapter, _) in owed.items()}
        outs = {label: out for label, (_, out) in owed.items()}
        done.update(evaluate_adapters(base_model, adapters, problems, task, spec, outs, home))
    return done


def load_students(base_model: str, adapters: dict, home: Path, dtype: str = "float32"):
    """(model, tokenizer, label -> PEFT adapter name): the base in `dtype` with every adapter
    loaded unmerged beside the others; None in `adapters` is the base (`__base__` in PEFT)."""
    from factory.inference import load_for_generation

    model, tokenizer = load_for_generation(base_model, home, dtype)
    folders = {label: folder for label, folder in adapters.items() if folder is not None}
    tokenizer = _adapter_tokenizer(list(folders.values())) or tokenizer
    names = {label: BASE_ADAPTER for label in adapters}
    for i, (label, folder) in enumerate(folders.items()):
        names[label] = f"student_{i}"  # labels may hold characters PEFT names cannot
        model = _with_adapter(model, folder, names[label])
    return model.eval(), tokenizer, names if folders else dict.fromkeys(adapters)


def _with_adapter(model, folder, name: str):
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model.load_adapter(str(folder), adapter_name=name)
        return model
    return PeftModel.from_pretrained(model, str(folder), adapter_name=name)


def _adapter_tokenizer(folders: list):
    """The tokenizer (and chat template) training saved with the adapters, or None when they
    saved none; adapters that were trained with different chat templates cannot share a batch."""
    from transformers import AutoTokenizer

    saved = [Path(f) for f in folders if (Path(f) / "tokenizer_config.json").is_file()]
    tokenizers = [AutoTokenizer.from_pretrained(f, padding_side="left") for f in saved]
    if len({t.chat_template for t in tokenizers}) > 1:
        raise ValueError(f"adapters trained with different chat templates: {saved}")
    return tokenizers[0] if tokenizers else None


def _generate(model, tokenizer, problems, task: str, spec, names: dict, desc: str):
    """label -> {problem index: response}: batches of `spec.batch_size` problems of similar
    length (less padding, same greedy outputs), each a row per problem for every label in one
    `generate`; `names` maps each label to its PEFT adapter name, or None without PEFT."""
    from factory.inference import generate_batch

    order = sorted(range(len(problems)), key=lambda i: len(problems[i].question))
    batches = [order[i : i + spec.batch_size] for i in range(0, len(order), spec.batch_size)]
    outputs: dict[str, dict[int, dict]] = {label: {} for label in names}
    for batch in tqdm(batches, desc=desc, unit="batch"):
        chats = [
            student_messages(problems[i].question, task=task, choices=problems[i].choices)
            for i in batch
        ]
        kwargs = {}
        if None not in names.values():
            kwargs["adapter_names"] = [name for name in names.values() for _ in batch]
        rows = generate_batch(
            model, tokenizer, chats * len(names), max_new_tokens=spec.max_new_tokens, **kwargs
        )
        for k, label in enumerate(names):
            mine = rows[k * len(batch) : (k + 1) * len(batch)]
            outputs[label].update(zip(batch, mine, strict=True))
    return outputs


def _score(problems, outputs: dict[int, dict], task: str, dtype: str, out: Path | None) -> dict:
    """Metrics of one student's outputs (with the dtype it ran in), written to `out` if given."""
    predictions = [_prediction(problems[i], outputs[i], task) for i in range(len(problems))]
    metrics = {**summarize(predictions), "dtype": dtype}
    if out is not None:
        write_results(out, metrics, predictions)
    return metrics


def _dtype(model) -> str:
    return str(model.dtype).removeprefix("torch.")


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
