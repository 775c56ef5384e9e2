"""Stage 6, evaluate: a model (or base + adapter) on held-out problems.

Greedy batched generation with left padding (`factory.inference`), the same answer extractor as
verification, accuracy with a 95% Wilson interval, and every prediction kept. A student alone
has its adapter merged (`load_student`); several students of one base share each `generate` on
a GPU (`load_students`, PEFT's per-row adapters; `mixed_batches`). Each student's answers are
bounded by what it was trained to write (`answer_bound`) unless the recipe sets a bound.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from factory.models import is_adapter
from factory.precision import device, eval_dtype
from factory.questions import student_messages
from factory.recipe import EvalSpec
from factory.recipe.schema import DEFAULT_MAX_NEW_TOKENS
from factory.scores import read_metrics, score
from factory.sources import Problem

log = logging.getLogger(__name__)
BOUND_MARGIN, BOUND_SLACK, BOUND_CAP = 1.25, 16, 2048  # see `answer_bound`
BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in `adapter_names`
MIXED_ROWS = 256  # rows of one mixed-adapter `generate`, at most (students x batch size)


def load_student(model: str, adapter: Path | str | None, home: Path, dtype: str = "float32"):
    """A model ready to generate, in `dtype`: the base alone, the base with the adapter merged
    in (merged in float32, exactly, then cast to `dtype`: the update is rounded once, as the
    base weights are), or a fully fine-tuned model's own folder."""
    from factory.inference import load_for_generation

    if adapter is not None and not is_adapter(adapter):
        return load_for_generation(str(adapter), home, dtype)
    if adapter is None:
        return load_for_generation(model, home, dtype)
    import torch

    merged, tokenizer, _ = load_students(model, {"student": adapter}, home, "float32")
    return merged.merge_and_unload().to(getattr(torch, dtype)).eval(), tokenizer


def mixed_batches() -> bool:
    """Whether several students of one base share each `generate` (PEFT's per-row adapters):
    on a GPU, where decoding is bound by reading the weights and one read serves every
    student. On a CPU decoding is bound by compute, and each student evaluated alone with its
    adapter merged is faster (bench/eval_adapters.py, bench/bf16_accuracy.py)."""
    return device() == "cuda"


def evaluated(
    model: str, adapter, problems, task: str, spec, out: Path, home: Path, label: str, bound=None
):
    """The metrics in `out`, after evaluating `model` (with `adapter`) there if they are not:
    `evaluated_together` with one student, so it answers exactly as it would beside others."""
    students, bounds = {label: (adapter, out)}, {label: bound}
    return evaluated_together(model, students, problems, task, spec, home, bounds)[label]


def evaluate_recipe(recipe, model: str | None, adapters: dict, outs: dict, home: Path) -> dict:
    """Any model, or adapter folders of one base (label -> folder, None for the model itself),
    on the recipe's test problems as its source gives them, together; label -> metrics, with
    each one's predictions and metrics in `outs[label]`. Without `model`, the adapters must share
    their base. A released adapter is bounded as it was when it was published."""
    from factory.models import adapter_base
    from factory.sources import SourceError, load_problems

    if model is None:
        bases = {adapter_base(Path(f)) for f in adapters.values() if f and is_adapter(f)}
        if len(bases) != 1:
            found = ", ".join(sorted(bases)) or "none (no adapter folder)"
            raise ValueError(f"give --model: the adapters' base models are {found}")
        (model,) = bases
    problems = load_problems(recipe.source, recipe.dataset).get("test")
    if not problems:
        raise SourceError(f"{recipe.path}: no test split to evaluate on")
    task, spec = recipe.source.task, recipe.eval
    bounds = {label: _recorded_bound(folder) for label, folder in adapters.items()}
    return evaluate_adapters(model, adapters, problems, task, spec, outs, home, bounds)


def _recorded_bound(folder: Path | None) -> int | None:
    """The answer bound a released student was evaluated with (its `eval_results.json`)."""
    metrics = read_metrics(Path(folder)) if folder is not None else None
    return (metrics or {}).get("max_new_tokens")


def evaluate(
    model,
    tokenizer,
    problems: list[Problem],
    task: str,
    spec: EvalSpec,
    out: Path | None = None,
    label: str = "model",
    bound: int | None = None,
) -> dict[str, Any]:
    """Accuracy on `problems`; predictions and metrics are written to `out` when given.
    Answers are bounded by `spec.max_new_tokens`, else by `bound` (see `answer_bound`)."""
    names, bounds = {label: None}, {label: bound}
    outs = {label: out} if out is not None else None
    return evaluate_students(model, tokenizer, names, problems, task, spec, outs, bounds)[label]


def evaluate_adapters(
    base_model: str,
    adapters: dict[str, Path | str | None],
    problems: list[Problem],
    task: str,
    spec: EvalSpec,
    outs: dict[str, Path] | None,
    home: Path,
    bounds: dict[str, int | None] | None = None,
    mixed: bool | None = None,
) -> dict[str, dict[str, Any]]:
    """Several students of one base model evaluated: `adapters` maps a label to an adapter
    folder, or to None for the base model itself. With `mixed` (default: `mixed_batches()`) each
    batch of `spec.batch_size` problems is ONE `generate` call with a row per problem per
    student, PEFT choosing each row's adapter (`adapter_names`), so the base weights are read
    once per decoding step for all of them; every student sees the batches it would see alone.
    Otherwise each student is evaluated alone, its adapter merged (`load_student`). Returns
    label -> metrics; `outs[label]` gets its predictions and metrics (as `evaluate` writes
    them). `bounds[label]` bounds a student's answers where `spec.max_new_tokens` is not set. A
    fully fine-tuned student's folder holds a model, not an adapter: it is evaluated alone.
    With `eval.endpoint` a server answers instead (factory/served.py)."""
    if spec.endpoint is not None:
        from factory.served import evaluate_served

        problems = problems[: spec.limit] if spec.limit else problems
        limits = {label: max_new_tokens(spec, (bounds or {}).get(label)) for label in adapters}
        args = (problems, task, spec.endpoint, outs, home, limits)
        return evaluate_served(base_model, adapters, *args)
    dtype, outs = eval_dtype(spec.dtype), outs or {}
    mixed = mixed_batches() if mixed is None else mixed
    shared = {k: f for k, f in adapters.items() if mixed and (f is None or is_adapter(f))}
    results = {}
    for label, folder in adapters.items():
        if label not in shared:
            model, tokenizer = load_student(base_model, folder, home, dtype)
            args = (problems, task, spec, {label: outs.get(label)}, bounds)
            results |= evaluate_students(model, tokenizer, {label: None}, *args)
    if shared:
        loaded = load_students(base_model, shared, home, dtype)
        results |= evaluate_students(*loaded, problems, task, spec, outs, bounds)
    return {label: results[label] for label in adapters}


def evaluate_students(
    model, tokenizer, names: dict, problems, task: str, spec: EvalSpec, outs=None, bounds=None
) -> dict[str, dict[str, Any]]:
    """`evaluate_adapters` on students already loaded by `load_students` (model, tokenizer,
    label -> PEFT adapter name): `MIXED_ROWS // eval.batch_size` students (at least one) share
    each `generate`, so a call holds at most `MIXED_ROWS` rows, or one batch."""
    problems = problems[: spec.limit] if spec.limit else problems
    limits = {label: max_new_tokens(spec, (bounds or {}).get(label)) for label in names}
    labels, size = list(names), max(1, MIXED_ROWS // spec.batch_size)
    outputs = {}
    for group in (labels[i : i + size] for i in range(0, len(labels), size)):
        mine = {label: names[label] for label in group}
        outputs |= _generate(model, tokenizer, problems, task, spec, mine, limits)
    outs, dtype = outs or {}, _dtype(model)
    return {
        label: score(
            problems,
            outputs[label],
            task,
            outs.get(label),
            {"dtype": dtype, "max_new_tokens": limits[label]},
        )
        for label in names
    }


def max_new_tokens(spec: EvalSpec, bound: int | None) -> int:
    """A student's answer bound: the recipe's `eval.max_new_tokens`, else `bound` (derived from
    what it was trained on), else `DEFAULT_MAX_NEW_TOKENS`."""
    return spec.max_new_tokens or bound or DEFAULT_MAX_NEW_TOKENS


def answer_bound(longest: int) -> int:
    """The answer bound for a student whose longest training completion is `longest` tokens:
    that with a margin (`BOUND_MARGIN` times, plus `BOUND_SLACK`), capped at `BOUND_CAP`."""
    return min(BOUND_CAP, math.ceil(longest * BOUND_MARGIN) + BOUND_SLACK)


def longest_completions(dataset_dir: Path, configs: list[str], tokenizer) -> dict[str, int]:
    """config -> the token count (in `tokenizer`) of its longest training completion."""
    from factory.shards import load_config

    longest = {}
    for config in configs:
        rows = load_config(dataset_dir, config).select_columns(["completion"])
        texts = [turn["content"] for row in rows for turn in row["completion"]]
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        longest[config] = max((len(i) for i in ids), default=0)
    return longest


def evaluated_together(
    base_model: str,
    students: dict[str, tuple[Path | str | None, Path]],
    problems: list[Problem],
    task: str,
    spec: EvalSpec,
    home: Path,
    bounds: dict[str, int | None] | None = None,
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
        args = (problems, task, spec, outs, home, bounds)
        done.update(evaluate_adapters(base_model, adapters, *args))
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


def _generate(model, tokenizer, problems, task: str, spec, names: dict, limits: dict):
    """label -> {problem index: response}: batches of `spec.batch_size` problems of similar
    length (less padding, same greedy outputs), each a row per problem for every label in one
    `generate`; `names` maps each label to its PEFT adapter name, or None without PEFT, and
    `limits` to its answer bound."""
    from factory.inference import generate_batch

    order = sorted(range(len(problems)), key=lambda i: len(problems[i].question))
    batches = [order[i : i + spec.batch_size] for i in range(0, len(order), spec.batch_size)]
    outputs: dict[str, dict[int, dict]] = {label: {} for label in names}
    desc = f"eval {next(iter(names))}" if len(names) == 1 else f"eval {len(names)} students"
    for batch in tqdm(batches, desc=desc, unit="batch"):
        chats = [
            student_messages(problems[i].question, task=task, choices=problems[i].choices)
            for i in batch
        ]
        kwargs = {}
        if None not in names.values():
            kwargs["adapter_names"] = [name for name in names.values() for _ in batch]
        kwargs["row_limits"] = [limits[label] for label in names for _ in batch]
        bound = max(limits.values())
        rows = generate_batch(model, tokenizer, chats * len(names), max_new_tokens=bound, **kwargs)
        for k, label in enumerate(names):
            mine = rows[k * len(batch) : (k + 1) * len(batch)]
            outputs[label].update(zip(batch, mine, strict=True))
    return outputs


def _dtype(model) -> str:
    return str(model.dtype).removeprefix("torch.")
