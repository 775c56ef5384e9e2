"""Evaluation with the real transformers and PEFT on the tiny model: several adapters in one
mixed batch answer exactly as each does alone, and the dtype a student ran in is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from factory.evaluate import (
    evaluate,
    evaluate_adapters,
    evaluate_students,
    evaluated,
    evaluated_together,
    load_student,
    load_students,
)
from factory.paths import PREDICTIONS
from factory.recipe import EvalSpec
from factory.sources import Problem

pytestmark = pytest.mark.slow  # builds models

QUESTIONS = [
    "1 + 2 =",
    "Ann has 5 apples. Ben gives Ann 3 more. How many apples now?",
    "Carla had 40 books and gave 12 to Dev. How many books are left?",
    "7 - 2 =",
    "Emma has 21 coins. Farid gives Emma 9 more. How many coins now? Say it step by step.",
    "Grace had 33 cards and gave 4 to Hiro. How many cards are left?",
    "3 * 4 =",
]
PROBLEMS = [Problem(id=f"p{i}", question=q, answer="8") for i, q in enumerate(QUESTIONS)]
SPEC = EvalSpec(max_new_tokens=12, batch_size=3, dtype="float32")  # 3 batches, the last short


def random_adapter(model_dir: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter with random A and B (PEFT's `init_lora_weights=False`), saved with the
    tokenizer as training saves it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=4, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        "cot L1": random_adapter(tiny_model_dir, root / "a", seed=1),
        "cot L3": random_adapter(tiny_model_dir, root / "b", seed=2),
    }


def outputs(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / PREDICTIONS).read_text().splitlines()]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_one_mixed_batch_answers_as_each_student_alone(
    tiny_model_dir, adapters, tmp_path, home, dtype
):
    spec = SPEC.model_copy(update={"dtype": dtype})
    students = {"base": None, **adapters}
    outs = {label: tmp_path / "together" / label for label in students}
    together = evaluate_adapters(
        str(tiny_model_dir), students, PROBLEMS, "math", spec, outs, home, mixed=True
    )
    for label, adapter in students.items():  # alone, unmerged: the same PEFT computation
        loaded = load_students(str(tiny_model_dir), {label: adapter}, home, dtype)
        alone = evaluate_students(*loaded, PROBLEMS, "math", spec, {label: tmp_path / label})
        assert outputs(outs[label]) == outputs(tmp_path / label), label
        assert together[label] == alone[label] and together[label]["dtype"] == dtype
        assert json.loads((outs[label] / "eval_results.json").read_text()) == alone[label]
        if dtype == "float32":  # merged exactly: the answers evaluation gives a student alone
            args = (PROBLEMS, "math", spec, tmp_path / f"{label}-merged", home, label)
            assert evaluated(str(tiny_model_dir), adapter, *args) == alone[label]
    texts = {label: [p["output"] for p in outputs(outs[label])] for label in students}
    assert len({tuple(t) for t in texts.values()}) == 3, "each student answers differently"
    assert all(p["completion_tokens"] > 0 for label in students for p in outputs(outs[label]))


def test_finished_students_are_not_evaluated_again(tiny_model_dir, adapters, tmp_path, home):
    first = tmp_path / "cot L1"
    alone = evaluated(
        str(tiny_model_dir), adapters["cot L1"], PROBLEMS, "math", SPEC, first, home, "cot L1"
    )
    stamp = (first / "eval_results.json").stat().st_mtime_ns
    students = {"base": (None, tmp_path / "base")}
    students |= {label: (adapter, tmp_path / label) for label, adapter in adapters.items()}
    metrics = evaluated_together(str(tiny_model_dir), students, PROBLEMS, "math", SPEC, home)
    assert metrics["cot L1"] == alone and (first / "eval_results.json").stat().st_mtime_ns == stamp
    assert all((out / "eval_results.json").is_file() for _, out in students.values())
    again = evaluated_together(str(tiny_model_dir), students, PROBLEMS, "math", SPEC, home)
    assert again == metrics and set(metrics) == {"base", "cot L1", "cot L3"}


def test_the_mixed_batch_routes_each_row_through_its_own_adapter(tiny_model_dir, adapters, home):
    model, tokenizer, names = load_students(str(tiny_model_dir), {"b": None, **adapters}, home)
    assert names == {"b": "__base__", "cot L1": "student_0", "cot L3": "student_1"}
    assert set(model.peft_config) == {"student_0", "student_1"}
    assert not any(m.merged for m in model.modules() if hasattr(m, "merged")), "unmerged"
    single, _, _ = load_students(str(tiny_model_dir), {"cot L3": adapters["cot L3"]}, home)
    assert set(single.peft_config) == {"student_0"}, "alone: the same unmerged PEFT model"
    ids = tokenizer(["1 + 2 ="], return_tensors="pt").input_ids
    with torch.inference_mode():
        mixed = model(input_ids=ids.repeat(3, 1), adapter_names=list(names.values())).logits
        alone = single(input_ids=ids).logits
        with single.disable_adapter():
            plain = single(input_ids=ids).logits
        single.merge_adapter()  # PEFT's merge, W + scale B A: the same function
        merged = single(input_ids=ids).logits
    torch.testing.assert_close(mixed[2], alone[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(merged[0], alone[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(mixed[1], mixed[2]), "two adapters, two answers"
    assert not torch.allclose(plain[0], alone[0]), "the adapter changes the logits"


def test_the_base_alone_needs_no_peft(tiny_model_dir, home):
    model, _, names = load_students(str(tiny_model_dir), {"base": None}, home)
    assert names == {"base": None} and not hasattr(model, "peft_config")


def test_students_evaluate_in_the_dtype_the_recipe_names(tiny_model_dir, adapters, tmp_path, home):
    bf16 = SPEC.model_copy(update={"dtype": "bfloat16"})
    metrics = evaluated(
        str(tiny_model_dir), adapters["cot L1"], PROBLEMS, "math", bf16, tmp_path, home, "x"
    )
    assert metrics["dtype"] == "bfloat16" and metrics["total"] == len(PROBLEMS)
    model, tokenizer = load_student(str(tiny_model_dir), None, home, "bfloat16")
    assert model.dtype == torch.bfloat16
    assert evaluate(model, tokenizer, PROBLEMS[:2], "math", SPEC)["dtype"] == "bfloat16"
    together = evaluate_adapters(
        str(tiny_model_dir), adapters, PROBLEMS[:2], "math", bf16, None, home
    )
    assert {m["dtype"] for m in together.values()} == {"bfloat16"}


def test_adapters_with_different_chat_templates_cannot_share_a_batch(
    tiny_model_dir, adapters, tmp_path, home
):
    from transformers import AutoTokenizer

    other = tmp_path / "other"
    random_adapter(tiny_model_dir, other, seed=3)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tokenizer.save_pretrained(other)
    with pytest.raises(ValueError, match="different chat templates"):
        load_students(str(tiny_model_dir), {"a": adapters["cot L1"], "o": other}, home)


def test_a_fully_fine_tuned_student_is_evaluated_as_a_model_of_its_own(
    tiny_model_dir, adapters, tmp_path, home
):
    """Full fine-tuning saves a model, not an adapter: beside adapters, it answers as itself."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from factory.inference import load_for_generation

    torch.manual_seed(4)
    full = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for weight in full.parameters():
            weight.add_(0.05 * torch.randn_like(weight))
    full.save_pretrained(tmp_path / "full")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "full")
    students = {"base": None, "full": tmp_path / "full", **adapters}
    model, tokenizer = load_for_generation(str(tmp_path / "full"), home)
    alone = evaluate(model, tokenizer, PROBLEMS, "math", SPEC, tmp_path / "alone")
    for mixed in (True, False):
        outs = {label: tmp_path / f"out-{mixed}" / label for label in students}
        args = (PROBLEMS, "math", SPEC, outs, home)
        metrics = evaluate_adapters(str(tiny_model_dir), students, *args, mixed=mixed)
        assert list(metrics) == list(students)
        assert metrics["full"] == alone and outputs(outs["full"]) == outputs(tmp_path / "alone")
        assert outputs(outs["full"]) != outputs(outs["base"]), "its own weights, not the base's"


def test_a_merged_student_answers_as_its_unmerged_adapter(tiny_model_dir, adapters, tmp_path, home):
    """Alone, a student's adapter is merged into the float32 weights: the same answers as PEFT's
    unmerged adapter, in float32; in bf16 the merged weights are rounded once."""
    merged, tokenizer = load_student(str(tiny_model_dir), adapters["cot L1"], home)
    assert not hasattr(merged, "peft_config") and merged.dtype == torch.float32
    loaded = load_students(str(tiny_model_dir), {"cot L1": adapters["cot L1"]}, home)
    unmerged = evaluate_students(*loaded, PROBLEMS, "math", SPEC, {"cot L1": tmp_path / "u"})
    alone = evaluate(merged, tokenizer, PROBLEMS, "math", SPEC, tmp_path / "m")
    assert alone == unmerged["cot L1"] and outputs(tmp_path / "m") == outputs(tmp_path / "u")
    bf16, _ = load_student(str(tiny_model_dir), adapters["cot L1"], home, "bfloat16")
    assert bf16.dtype == torch.bfloat16 and not hasattr(bf16, "peft_config")
    base, _ = load_student(str(tiny_model_dir), None, home)
    pairs = zip(base.parameters(), merged.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs), "the merge changed the weights"


def test_row_limits_give_the_answers_separate_bounds_give(tiny_model_dir, home):
    from factory.inference import generate_batch, load_for_generation

    model, tokenizer = load_for_generation(str(tiny_model_dir), home)
    chats = [[{"role": "user", "content": q}] for q in QUESTIONS[:3]]
    limits = [3, 12, 7]
    together = generate_batch(model, tokenizer, chats, max_new_tokens=12, row_limits=limits)
    for chat, limit, got in zip(chats, limits, together, strict=True):
        (alone,) = generate_batch(model, tokenizer, [chat], max_new_tokens=limit)
        assert got == alone and got["usage"]["completion_tokens"] <= limit
    assert together[0]["finish_reason"] == "length", "cut at 3 tokens"


def test_rows_that_finish_leave_the_batch_and_the_others_answer_as_before(
    tiny_model_dir, adapters, home
):
    """Decoded a segment at a time, a batch sheds each row that stopped or reached its bound,
    and every answer (text, finish reason, tokens) equals one uninterrupted `generate`'s, with
    rows routed through different adapters. A stop token that the tiny model writes at
    different places in different rows makes them finish apart."""
    from collections import Counter

    from factory.inference import generate_batch

    model, tokenizer, names = load_students(str(tiny_model_dir), adapters | {"base": None}, home)
    chats = [[{"role": "user", "content": q}] for q in QUESTIONS] * 3
    rows = {"adapter_names": [name for name in names.values() for _ in QUESTIONS]}
    prompts = tokenizer(
        [
            tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in chats
        ],
        return_tensors="pt",
        padding=True,
        add_special_tokens=False,
    )
    with torch.inference_mode():
        plain = model.generate(**prompts, max_new_tokens=24, do_sample=False, **rows)
    tokens = plain[:, prompts["input_ids"].shape[1] :].tolist()
    first = Counter(t for row in tokens for t in {t: None for t in row[1:20]})
    stop = max(first, key=lambda t: (len({row.index(t) for row in tokens if t in row}), -t))
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, stop]
    limits = [24, 9, 17, 24, 5, 24, 20] * 3
    generate, sizes = model.generate, []

    def counting_rows(**kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        return generate(**kwargs)

    model.generate = counting_rows
    whole = generate_batch(
        model, tokenizer, chats, max_new_tokens=24, row_limits=limits, segment=99, **rows
    )
    assert sizes == [21]
    sizes.clear()
    shed = generate_batch(
        model, tokenizer, chats, max_new_tokens=24, row_limits=limits, segment=3, **rows
    )
    assert shed == whole
    for row, limit, answer in zip(tokens, limits, whole, strict=True):
        ends = [i for i, t in enumerate(row[:limit]) if t in (stop, tokenizer.eos_token_id)]
        kept = row[: ends[0] if ends else limit]
        assert answer["text"] == tokenizer.decode(kept, skip_special_tokens=True).strip()
        assert answer["usage"]["completion_tokens"] == len(kept)
    assert sizes[0] == 21 and sizes == sorted(sizes, reverse=True) and sizes[-1] < 21
    reasons = Counter(r["finish_reason"] for r in whole)
    assert reasons["stop"] >= 3 and reasons["length"] >= 3, reasons
    assert len({r["usage"]["completion_tokens"] for r in whole}) >= 4, "rows end apart"


def test_each_student_is_bounded_by_what_it_was_taught_to_write(tmp_path, tiny_model_dir, home):
    """Unset `eval.max_new_tokens`: a config's bound is its longest training completion in the
    student's tokens with a margin; the base gets the largest; a set value wins."""
    import math

    import yaml
    from test_train import toy_recipe
    from transformers import AutoTokenizer

    from factory.evaluate import BOUND_CAP, BOUND_MARGIN, BOUND_SLACK
    from factory.recipe import load_recipe
    from factory.run import answer_bounds, build_dataset, train_then_evaluate
    from factory.scores import read_metrics
    from factory.shards import load_config

    path = toy_recipe(tmp_path, tiny_model_dir, sft={"num_train_epochs": 1})
    spec = yaml.safe_load(path.read_text())
    spec["teacher"] = {"backend": "program", "name": "program"}
    spec["cot"] = {"levels": [1, 6], "formats": ["cot"], "answer_only": True}
    del spec["eval"]["max_new_tokens"]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    recipe = load_recipe(path)
    assert recipe.eval.max_new_tokens is None
    done = build_dataset(recipe, home)
    student = recipe.students[0]
    bounds = answer_bounds(recipe, done, student, home)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainable = done.manifest.trainable()
    assert set(bounds) == {None, *trainable} and len(trainable) == 3
    for config in trainable:
        texts = [r["completion"][0]["content"] for r in load_config(done.run.dataset, config)]
        longest = max(len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts)
        assert bounds[config] == min(BOUND_CAP, math.ceil(longest * BOUND_MARGIN) + BOUND_SLACK)
    assert bounds["cot-L6"] > bounds["cot-L1"] > bounds["answer-only"]
    assert bounds[None] == bounds["cot-L6"]
    seed = recipe.train.seeds[0]
    train_then_evaluate(recipe, done, [("tiny", "answer-only", seed)], home)
    assert read_metrics(done.run.base_eval("tiny"))["max_new_tokens"] == bounds[None]
    distilled = read_metrics(done.run.evaluation("tiny", "answer-only", seed))
    assert distilled["max_new_tokens"] == bounds["answer-only"]
    spec["eval"]["max_new_tokens"] = 5
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    fixed = load_recipe(path)
    assert set(answer_bounds(fixed, done, student, home).values()) == {5}
