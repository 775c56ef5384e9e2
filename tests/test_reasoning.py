"""Reasoning-model teachers: their thinking captured from each response shape servers use, kept
apart from the answer, long (`-think`) and short configs, the preview, students' templates.

The teacher is tests/fake_openai.py answering as a reasoning model behind a reasoning parser
(`reasoning`, `reasoning_content` message fields) or without one (inline `<think>` tags), through
the real `openai` client; the student is the tiny model of tests/tiny.py with the real TRL."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
import yaml
from fake_openai import FakeOpenAI, thinking_about
from huggingface_hub import DatasetCard
from test_generate import fake_teacher, read_traces, write_recipe

from factory.answers import extract_answer, is_correct, strip_thinking
from factory.cli import main
from factory.reasoning import split_response, student_completion, thinking_form
from factory.recipe import CONFIG_NAME, RecipeError, load_recipe
from factory.responses import BadResponse, check_response, parse_completion
from factory.run import build_dataset
from factory.shards import load_config

SHAPES = ("reasoning", "reasoning_content", "inline")
TRL_TEMPLATES = Path(__import__("trl").__file__).parent / "chat_templates"


def edit(path: Path, **sections) -> Path:
    """The recipe at `path` with `sections` merged into its own."""
    recipe = yaml.safe_load(path.read_text())
    for key, value in sections.items():
        recipe[key] = {**recipe.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture
def thinker(request):
    server = FakeOpenAI(thinking=getattr(request, "param", "reasoning")).start()
    yield server
    server.stop()


# --- the answer after the thinking ------------------------------------------------------------

THOUGHT_12 = "<think>\nTom has 5 and gets 8, so 5 + 8 = 12. The answer is 12.\n</think>\n\n"
THOUGHT_13 = "<think>\nFirst 5 + 8 = 13. So the answer is 13.\n</think>\n\n"


@pytest.mark.parametrize(
    ("text", "right"),
    [
        (THOUGHT_12 + "Adding 5 and 8 gives 13 apples.", True),  # a wrong number in the thinking
        (THOUGHT_13 + "Adding 5 and 8 gives 12 apples.", False),  # the right one, then a wrong
        ("<think>\nFirst 5 + 8 = 13. So the answer is 13.", False),  # cut while thinking
        ("5 + 8 = 12. The answer is 12.\n</think>\n\nThe answer is 13.", True),  # prompt opened it
    ],
)
def test_the_answer_is_read_after_the_thinking(text, right):
    assert is_correct(extract_answer(text, "math"), "13", "math") is right


def test_strip_thinking_leaves_other_text_alone():
    assert (
        strip_thinking("Step 1: 2 + 2 = 4.\nThe answer is 4.")
        == "Step 1: 2 + 2 = 4.\nThe answer is 4."
    )
    assert strip_thinking("<think>\n\n</think>\n\nThe answer is 4.") == "The answer is 4."
    assert strip_thinking("[THINK]4?[/THINK] The answer is 5.", ("[THINK]", "[/THINK]")) == (
        "The answer is 5."
    )


# --- capture ----------------------------------------------------------------------------------


def completion_body(message: dict, finish: str = "stop", **usage) -> str:
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
    return json.dumps({"choices": [choice], "usage": {"completion_tokens": 40, **usage}})


def test_each_field_shape_is_read_and_a_chain_cut_while_thinking_is_kept():
    body = completion_body(
        {"content": None, "reasoning_content": "Let me add 5 and 8"},
        "length",
        completion_tokens_details={"reasoning_tokens": 40},
    )
    response = check_response(parse_completion("application/json", body), max_tokens=40)
    assert response["text"] == "" and response["usage"]["reasoning_tokens"] == 40
    thinking = split_response(response)
    assert (thinking.reasoning, thinking.source, thinking.answer) == (
        "Let me add 5 and 8",
        "reasoning_content",
        "",
    )
    bare = parse_completion("application/json", completion_body({"content": " "}, "length"))
    with pytest.raises(BadResponse, match="empty completion"):
        check_response(bare, max_tokens=40)


def test_split_response_finds_inline_and_prefilled_thinking():
    inline = split_response({"text": "<think>\nA.\n\nB.\n</think>\n\nThe answer is 3."})
    assert (inline.reasoning, inline.answer, inline.source, inline.cut) == (
        "A.\n\nB.",
        "The answer is 3.",
        "inline",
        False,
    )
    cut = split_response({"text": "<think>\nA. Then B"})
    assert (cut.reasoning, cut.answer, cut.cut) == ("A. Then B", "", True)
    prefilled = split_response({"text": "A.\n</think>\n3", "thinking_prefilled": True})
    assert (prefilled.reasoning, prefilled.answer) == ("A.", "3")
    assert split_response({"text": "<think>\n\n</think>\n\n3"}).source is None  # thinking off
    custom = split_response({"text": "<r>A.</r>3"}, ("<r>", "</r>"))
    assert (custom.reasoning, custom.answer) == ("A.", "3")


# --- builds -----------------------------------------------------------------------------------


def reasoning_recipe(tmp_path: Path, server: FakeOpenAI, train: int = 4, **teacher) -> Path:
    return write_recipe(tmp_path, fake_teacher(server, max_tokens=512, **teacher), train=train)


@pytest.mark.slow
@pytest.mark.parametrize("thinker", SHAPES, indirect=True)
def test_each_shape_builds_long_and_short_configs(thinker, tmp_path, home):
    done = build_dataset(load_recipe(reasoning_recipe(tmp_path, thinker)), home)
    stats, shape = done.manifest.configs, thinker.thinking
    assert list(stats) == ["cot-L1", "cot-L1-think"], "detected from its answers"
    assert stats["cot-L1"]["kept"] == stats["cot-L1-think"]["kept"] == 4
    assert stats["cot-L1-think"]["thinking"] and "usage" not in stats["cot-L1-think"]
    found = "inline" if shape == "inline" else shape
    assert stats["cot-L1"]["reasoning"]["sources"] == {found: 4}
    assert stats["cot-L1"]["usage"]["reasoning_tokens"] > 0
    short, long = (load_config(done.run.dataset, c) for c in ("cot-L1", "cot-L1-think"))
    for s, t in zip(short, long, strict=True):
        thinking, answer, total = thinking_about(s["question"])
        assert s["completion"][0]["content"] == answer, "the short config has no thinking"
        assert t["completion"][0]["content"] == f"<think>\n{thinking}\n</think>\n\n{answer}"
        assert s["reasoning"] == t["reasoning"] == thinking
        assert s["reasoning_source"] == found and s["predicted_answer"] == str(total)
        assert s["raw_output"] == (t["completion"][0]["content"] if shape == "inline" else answer)
        assert t["num_reasoning_tokens"] > 50 and t["num_tokens"] > s["num_tokens"]
    card = DatasetCard.load(done.run.dataset / "README.md").text
    assert "**Thinking**" in card and f"| `cot-L1-think` | yes | 4 | `{found}` 4 |" in card


@pytest.mark.slow
@pytest.mark.parametrize("thinker", SHAPES, indirect=True)
@pytest.mark.parametrize("max_tokens", [30, 120])  # cut inside its 116 words, or after them
def test_a_chain_cut_by_max_tokens_is_truncated_and_cached(thinker, max_tokens, tmp_path, home):
    path = edit(reasoning_recipe(tmp_path, thinker), teacher={"max_tokens": max_tokens})
    done = build_dataset(load_recipe(path), home)
    traces = read_traces(done.run.root)
    assert {t["drop_reason"] for t in traces} == {"truncated"}
    assert all(t["reasoning"] for t in traces), "the thinking is kept in the traces"
    assert {t["config"] for t in traces} == {"cot-L1", "cot-L1-think"}
    build_dataset(load_recipe(path), home)
    assert len(thinker.requests) == 4, "kept as answers, not retried"


@pytest.mark.slow
def test_max_reasoning_tokens_drops_long_chains_as_overlong(thinker, tmp_path, home):
    path = reasoning_recipe(tmp_path, thinker, train=12)
    recipe = yaml.safe_load(path.read_text())
    recipe["source"]["options"] |= {"min_terms": 2, "max_terms": 5}
    path.write_text(yaml.safe_dump(recipe))
    lengths = [
        t["num_reasoning_tokens"]
        for t in read_traces(build_dataset(load_recipe(path), home).run.root)
    ]
    limit = sorted(lengths)[len(lengths) // 2]
    done = build_dataset(load_recipe(edit(path, cot={"max_reasoning_tokens": limit})), home)
    stats = done.manifest.configs
    over = sum(n > limit for n in lengths) // 2  # each answer is a short and a long trace
    assert 0 < over < 12 and stats["cot-L1-think"]["dropped"] == {"overlong": over}
    assert stats["cot-L1"]["kept"] == 12, "the short config keeps them: no thinking in it"
    card = DatasetCard.load(done.run.dataset / "README.md").text
    assert f"more than {limit} thinking tokens are dropped as `overlong`" in card


@pytest.mark.slow
def test_a_teacher_marked_reasoning_that_sends_no_thinking_is_warned_about_once(
    tmp_path, home, caplog
):
    server = FakeOpenAI().start()
    try:
        path = reasoning_recipe(tmp_path, server, reasoning=True)
        with caplog.at_level(logging.WARNING, logger="factory"):
            done = build_dataset(load_recipe(path), home)
    finally:
        server.stop()
    warnings = [r for r in caplog.records if "carried thinking" in r.getMessage()]
    assert len(warnings) == 1 and "--reasoning-parser" in warnings[0].getMessage()
    assert done.manifest.configs["cot-L1-think"]["kept"] == 0
    card = DatasetCard.load(done.run.dataset / "README.md")
    assert "cot-L1-think" not in {c["config_name"] for c in card.data.configs}


@pytest.mark.slow
def test_reasoning_false_keeps_the_thinking_column_but_builds_no_long_config(
    thinker, tmp_path, home
):
    done = build_dataset(load_recipe(reasoning_recipe(tmp_path, thinker, reasoning=False)), home)
    assert list(done.manifest.configs) == ["cot-L1"]
    assert all(r["reasoning"] for r in load_config(done.run.dataset, "cot-L1"))


@pytest.mark.slow
def test_reasoning_effort_and_extra_body_are_sent_and_key_the_cache(thinker, tmp_path, home):
    extra = {"chat_template_kwargs": {"enable_thinking": True}}
    path = reasoning_recipe(tmp_path, thinker, reasoning_effort="high", extra_body=extra)
    build_dataset(load_recipe(path), home)
    body = thinker.requests[0]
    assert (
        body["reasoning_effort"] == "high"
        and body["chat_template_kwargs"] == extra["chat_template_kwargs"]
    )
    build_dataset(load_recipe(path), home)
    assert len(thinker.requests) == 4, "the same settings: every answer cached"
    build_dataset(load_recipe(edit(path, teacher={"reasoning_effort": "low"})), home)
    assert len(thinker.requests) == 8, "another effort: other answers"


@pytest.mark.slow
def test_a_mixture_holds_long_and_short_rows_in_its_stated_ratio(thinker, tmp_path, home):
    path = reasoning_recipe(tmp_path, thinker, train=8, reasoning=True)
    path = edit(path, mixtures={"half-long": {"cot-L1": 0.75, "cot-L1-think": 0.25}})
    done = build_dataset(load_recipe(path), home)
    assert done.manifest.configs["half-long"]["composition"] == {"cot-L1": 6, "cot-L1-think": 2}
    rows = load_config(done.run.dataset, "half-long")
    long = [r for r in rows if r["source_config"] == "cot-L1-think"]
    assert len(long) == 2 and all(r["completion"][0]["content"].startswith("<think>") for r in long)
    short = [r for r in rows if r["source_config"] == "cot-L1"]
    assert not any("<think>" in r["completion"][0]["content"] for r in short)


def test_long_config_names_and_their_recipe_errors(tmp_path):
    assert CONFIG_NAME.match("cot-L3-think") and not CONFIG_NAME.match("cot-L3-thinker")
    teacher = {"backend": "openai", "model": "m", "api_key_env": None}
    path = write_recipe(tmp_path, teacher)
    plain = load_recipe(path)
    dumped = json.dumps(plain.model_dump(mode="json"))
    assert "reasoning" not in dumped and "extra_body" not in dumped, "old hashes hold"
    edit(path, mixtures={"mix": ["cot-L1", "cot-L1-think"]})
    with pytest.raises(RecipeError, match="set `reasoning: true` on its teacher"):
        load_recipe(path)
    edit(path, mixtures={}, teacher={**teacher, "extra_body": {"temperature": 1}})
    with pytest.raises(RecipeError, match="teacher.extra_body: .*set teacher.temperature"):
        load_recipe(path)


# --- the preview ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_preview_prints_the_estimate_and_the_build_reuses_its_answers(
    thinker, tmp_path, home, capsys
):
    path = reasoning_recipe(tmp_path, thinker, train=6, price={"input": 1.0, "output": 4.0})
    path = edit(path, cot={"levels": [1, 3]})
    assert main(["build", str(path), "--home", str(home), "--preview", "2"]) == 0
    out = capsys.readouterr().out
    assert len(thinker.requests) == 2 * 2, "two problems per config and no more"
    assert not (home / "runs").exists(), "no run folder, no dataset"
    for config in ("cot-L1", "cot-L1-think", "cot-L3", "cot-L3-think"):
        assert f"--- {config} ---" in out
    assert "more lines ...]" in out and "100.0%" in out
    assert "6 requests" in out and "cost " in out and "cost unknown" not in out
    done = build_dataset(load_recipe(path), home)
    assert len(thinker.requests) == 6 * 2, "the build asks only what the preview did not"
    assert done.manifest.configs["cot-L3-think"]["kept"] == 6


# --- students ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "form"),
    [
        ("qwen3", "reasoning_content"),  # Qwen3's own field
        ("lfm2_2_5", "reasoning_content"),  # renders it as its own <think> block
        ("gptoss", "reasoning_content"),  # GPT-OSS's analysis channel
        ("qwen3_instruct_2507", "content"),  # no thinking of its own: plain tags
        ("deepseek_r1_distill", None),  # drops the thinking of every assistant turn
        ("deepseek_r1_distill_training", "content"),  # TRL's training template keeps it
        (None, "content"),  # the tiny model's ChatML
    ],
)
def test_a_students_template_decides_how_it_takes_the_thinking(template, form):
    from tiny import build_tokenizer

    tokenizer = build_tokenizer()
    if template:
        tokenizer.chat_template = (TRL_TEMPLATES / f"{template}.jinja").read_text()
    assert thinking_form(tokenizer) == form
    completion = [
        {"role": "assistant", "content": "<think>\nA, then B.\n</think>\n\nThe answer is 3."}
    ]
    if form:
        prompt = [{"role": "user", "content": "1 + 2?"}]
        turn = student_completion(completion, form)
        text = tokenizer.apply_chat_template(prompt + turn, tokenize=False)
        assert "A, then B." in text and "The answer is 3." in text


@pytest.mark.slow
def test_a_tiny_student_trains_on_a_long_config(thinker, tmp_path, tiny_model_dir, home):
    from factory.train import train_student

    path = reasoning_recipe(tmp_path, thinker, train=8)
    path = edit(
        path,
        students=[{"model": str(tiny_model_dir), "name": "tiny"}],
        train={
            "lora": {"r": 8, "lora_alpha": 16},
            "sft": {"num_train_epochs": 1, "logging_steps": 1},
        },
    )
    recipe = load_recipe(path)
    done = build_dataset(recipe, home)
    rows = load_config(done.run.dataset, "cot-L1-think")
    assert len(rows) == 8 and rows[0]["completion"][0]["content"].startswith("<think>\n")
    student = recipe.students[0]
    result = train_student(
        recipe, student, "cot-L1-think", done.run.dataset, tmp_path / "run", home
    )
    assert result.metrics["rows"] == 8 and result.metrics["steps"] > 0
    assert os.path.isfile(result.adapter_dir / "adapter_model.safetensors")


@pytest.mark.slow
def test_a_local_model_whose_prompt_opens_the_thinking_is_split(tiny_model_dir, tmp_path, home):
    """Qwen3.5's template opens `<think>` in the generation prompt: the text then starts inside
    the thinking, here cut off by max_tokens before it closes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = tmp_path / "thinking-tiny"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = (TRL_TEMPLATES / "qwen3_5_think.jinja").read_text()
    tokenizer.save_pretrained(model_dir)
    AutoModelForCausalLM.from_pretrained(tiny_model_dir).save_pretrained(model_dir)
    teacher = {"backend": "transformers", "model": str(model_dir), "max_tokens": 8}
    done = build_dataset(load_recipe(write_recipe(tmp_path, teacher, train=2)), home)
    traces = read_traces(done.run.root)
    assert {t["reasoning_source"] for t in traces} == {"inline"}
    assert all(t["reasoning"] and t["drop_reason"] == "truncated" for t in traces)
    assert {t["config"] for t in traces} == {"cot-L1", "cot-L1-think"}


def test_evaluation_reports_the_thinking_of_a_student_that_thinks():
    """A student's answer with `<think>`: the answer is read after the thinking, its thinking
    tokens are counted (in the student's tokenizer), and one cut off while thinking has no
    answer and is counted as such."""
    from tiny import build_tokenizer

    from factory.inference import _response
    from factory.scores import prediction, summarize
    from factory.sources import Problem
    from factory.summaries import accuracy_line

    tokenizer = build_tokenizer()
    thinking = "Five boxes of 4 pens is 20 pens; two more boxes of 4 is 8, so 28 in all."
    texts = [
        f"<think>\n{thinking}\n</think>\n\nThe answer is 28.",
        "<think>\nFive boxes of 4 pens is 20 pens; two more",  # cut off while thinking
        "The answer is 28.",  # no thinking at all
    ]
    inputs = {"attention_mask": torch.ones(3, 3, dtype=torch.long)}
    eos = tokenizer.eos_token_id
    responses = [
        _response(
            tokenizer, tokenizer(t, add_special_tokens=False).input_ids + [eos], {eos}, inputs, i
        )
        for i, t in enumerate(texts)
    ]
    expected = len(tokenizer(thinking, add_special_tokens=False).input_ids)
    assert responses[0]["usage"]["reasoning_tokens"] == expected
    assert "reasoning_tokens" not in responses[2]["usage"]
    problem = Problem(id="p", question="How many pens?", answer="28")
    predictions = [prediction(problem, r, "math") for r in responses]
    assert [p["predicted_answer"] for p in predictions] == ["28", None, "28"]
    metrics = summarize(predictions)
    cut = predictions[1]["thinking_tokens"]
    assert metrics["mean_thinking_tokens"] == round((expected + cut) / 3, 1)
    assert metrics["thinking_answers"] == 2 and metrics["thinking_cut"] == 1
    assert "thinking" in accuracy_line("s", {**metrics, "ci95": [0, 1]})
    plain = summarize([predictions[2]])
    assert "mean_thinking_tokens" not in plain and "thinking" not in accuracy_line("s", plain)
