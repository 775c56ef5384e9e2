"""Evaluation through an OpenAI-compatible endpoint (`eval.endpoint`): a real `transformers serve`
on loopback answers exactly as in-process generation does, and the scriptable fake shows the
names, templates, bounds and failures the requests carry."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch

from factory.evaluate import evaluate_adapters
from factory.paths import EVAL_METRICS, PREDICTIONS
from factory.recipe import EvalSpec, load_recipe
from factory.recipe.schema import EvalEndpoint
from factory.served import EndpointError, served_prompt
from factory.sources import Problem

QUESTIONS = [
    "Ann has 5 apples. Ben gives Ann 3 more. How many apples now?",
    "Carla had 40 books and gave 12 to Dev. How many books are left?",
    "7 - 2 =",
    "Emma has 21 coins. Farid gives Emma 9 more. How many coins now?",
    "Grace had 33 cards and gave 4 to Hiro. How many cards are left?",
    "3 * 4 =",
    "Ivy reads 6 pages a day for 3 days. How many pages?",
    "1 + 2 =",
]
SPEC = EvalSpec(max_new_tokens=16, batch_size=3, dtype="float32")  # batches of 3: padded rows
CUSTOM_TEMPLATE = (
    "{%- for m in messages %}[[{{ m['role'] }}]] {{ m['content'] }}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}[[assistant]] {%- endif %}"
)


def problems(golds: list[str] | None = None) -> list[Problem]:
    """The questions, each with `golds[i]`, or the first number it names."""
    firsts = [re.findall(r"\d+", q)[0] for q in QUESTIONS]
    answers = golds or firsts
    return [Problem(id=f"p{i}", question=q, answer=answers[i]) for i, q in enumerate(QUESTIONS)]


def served(spec: EvalSpec, base_url: str, **endpoint) -> EvalSpec:
    return spec.model_copy(update={"endpoint": EvalEndpoint(base_url=base_url, **endpoint)})


def predictions(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / PREDICTIONS).read_text().splitlines()]


def fine_tuned(model_dir: Path, out: Path, template: str | None = None) -> Path:
    """A 'fully fine-tuned' student: the tiny model's weights moved, saved with its tokenizer
    (and a chat template of its own, if given)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(5)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        for weight in model.parameters():
            weight.add_(0.05 * torch.randn_like(weight))
    model.save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = template or tokenizer.chat_template
    tokenizer.save_pretrained(out)
    return out


@pytest.mark.slow
def test_a_served_base_and_student_answer_as_in_process(tiny_model_dir, tmp_path, home, caplog):
    """`transformers serve` (greedy, one request at a time) gives every row the answer that
    in-process batched generation gives, so accuracies are equal; half the golds are what the
    model answers in-process, so they are not 0 = 0."""
    from tiny import start_transformers_serve

    full = fine_tuned(tiny_model_dir, tmp_path / "full", CUSTOM_TEMPLATE)
    students = {"base": None, "full": full}
    base = str(tiny_model_dir)
    first = evaluate_adapters(base, students, problems(), "math", SPEC, None, home)
    assert set(first) == set(students)
    local_outs = {label: tmp_path / "local" / label for label in students}
    evaluate_adapters(base, students, problems(), "math", SPEC, local_outs, home)
    answered = [p["predicted_answer"] for p in predictions(local_outs["base"])]
    golds = [a if i % 2 == 0 and a else "99999" for i, a in enumerate(answered)]
    local_outs = {label: tmp_path / "local-golds" / label for label in students}
    local = evaluate_adapters(base, students, problems(golds), "math", SPEC, local_outs, home)
    assert local["base"]["correct"] >= 2, "the golds make some answers right"

    with start_transformers_serve(None) as server, caplog.at_level(logging.WARNING):
        spec = served(SPEC, server.base_url, models={"full": str(full)})
        outs = {label: tmp_path / "served" / label for label in students}
        remote = evaluate_adapters(base, students, problems(golds), "math", spec, outs, home)
    assert "other prompt tokens" not in caplog.text, "the server counts the student's tokens"
    for label in students:
        counts = ("accuracy", "correct", "total", "answered", "truncated", "max_new_tokens")
        assert {k: remote[label][k] for k in counts} == {k: local[label][k] for k in counts}
        mine, theirs = predictions(outs[label]), predictions(local_outs[label])
        keys = ("id", "output", "predicted_answer", "correct", "finish_reason", "completion_tokens")
        assert [{k: p[k] for k in keys} for p in mine] == [{k: p[k] for k in keys} for p in theirs]
        assert "dtype" not in remote[label] and server.base_url not in json.dumps(remote[label])
    assert remote["base"]["served_model"] == base and remote["full"]["served_model"] == str(full)
    assert predictions(outs["full"]) != predictions(outs["base"]), "each asked as itself"


@pytest.fixture
def fake():
    from fake_openai import FakeOpenAI

    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    from test_evaluate import random_adapter
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("served-adapters")
    plain = random_adapter(tiny_model_dir, root / "plain", seed=1)
    custom = random_adapter(tiny_model_dir, root / "custom", seed=2)
    tokenizer = AutoTokenizer.from_pretrained(custom)
    tokenizer.chat_template = CUSTOM_TEMPLATE
    tokenizer.save_pretrained(custom)
    return {"smollm2 cot-L1 seed 0": plain, "smollm2 cot-L3 seed 0": custom}


@pytest.mark.slow
def test_each_student_is_asked_under_its_name_with_its_template_and_bound(
    tiny_model_dir, adapters, fake, tmp_path, home
):
    students = {"smollm2 base": None, **adapters}
    bounds = {"smollm2 base": 40, "smollm2 cot-L1 seed 0": 7, "smollm2 cot-L3 seed 0": 30}
    spec = served(EvalSpec(), fake.base_url, concurrency=4)
    outs = {label: tmp_path / label.replace(" ", "_") for label in students}
    metrics = evaluate_adapters(
        str(tiny_model_dir), students, problems(), "math", spec, outs, home, bounds
    )
    asked: dict[str, list[dict]] = {}
    for body in fake.requests:
        asked.setdefault(body["model"], []).append(body)
    names = {str(tiny_model_dir), "smollm2-cot-L1-seed-0", "smollm2-cot-L3-seed-0"}
    assert set(asked) == names and all(len(b) == len(QUESTIONS) for b in asked.values())
    assert all(b["temperature"] == 0 and "messages" not in b for b in fake.requests)
    assert {b["max_tokens"] for b in asked["smollm2-cot-L1-seed-0"]} == {7}
    assert all(b["prompt"].startswith("[[user]] ") for b in asked["smollm2-cot-L3-seed-0"])
    assert all(b["prompt"].startswith("<|im_start|>user") for b in asked[str(tiny_model_dir)])
    # The fake answers each problem's first number in 9 words: the 7-token bound cuts it.
    assert metrics["smollm2 base"]["accuracy"] == 1.0
    assert metrics["smollm2 cot-L3 seed 0"]["accuracy"] == 1.0
    cut = metrics["smollm2 cot-L1 seed 0"]
    assert cut["accuracy"] == 0.0 and cut["truncated"] == len(QUESTIONS)
    written = json.loads((outs["smollm2 base"] / EVAL_METRICS).read_text())
    assert written == metrics["smollm2 base"] and written["max_new_tokens"] == 40
    assert [p["predicted_answer"] for p in predictions(outs["smollm2 base"])] == [
        p.answer for p in problems()
    ]


@pytest.mark.slow
def test_a_model_the_server_lacks_fails_with_the_command_that_serves_it(
    tiny_model_dir, adapters, fake, tmp_path, home
):
    fake.models = {str(tiny_model_dir)}
    students = {"smollm2 base": None, **adapters}
    spec = served(EvalSpec(), fake.base_url)
    outs = {label: tmp_path / label.replace(" ", "_") for label in students}
    with pytest.raises(EndpointError) as raised:
        evaluate_adapters(str(tiny_model_dir), students, problems(), "math", spec, outs, home)
    message = str(raised.value)
    assert "does not serve smollm2 cot-L" in message and "model 'smollm2-cot-L" in message
    assert f"vllm serve {tiny_model_dir}" in message
    assert "--enable-lora --max-lora-rank 8 --max-loras 2 --lora-modules" in message
    for label, folder in adapters.items():
        assert f"{label.replace(' ', '-')}={folder.resolve()}" in message
    assert "eval.endpoint.models" in message
    assert not any((out / EVAL_METRICS).exists() for out in outs.values())


@pytest.mark.slow
def test_a_student_whose_answers_fail_leaves_the_others_written(
    tiny_model_dir, adapters, fake, tmp_path, home
):
    fake.failing = {"smollm2-cot-L1-seed-0"}
    students = {"smollm2 base": None, **adapters}
    spec = served(EvalSpec(), fake.base_url, max_retries=0)
    outs = {label: tmp_path / label.replace(" ", "_") for label in students}
    with pytest.raises(EndpointError, match=r"smollm2 cot-L1 seed 0 \(8 unanswered\)"):
        evaluate_adapters(str(tiny_model_dir), students, problems(), "math", spec, outs, home)
    assert (outs["smollm2 base"] / EVAL_METRICS).is_file()
    assert (outs["smollm2 cot-L3 seed 0"] / EVAL_METRICS).is_file()
    assert not (outs["smollm2 cot-L1 seed 0"] / EVAL_METRICS).exists()


def test_an_unreachable_endpoint_is_one_clear_error(tiny_model_dir, tmp_path, home):
    from tiny import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    spec = served(EvalSpec(), url, max_retries=0)
    with pytest.raises(EndpointError, match=rf"cannot reach {re.escape(url)} \(.*; 1 tries\)"):
        evaluate_adapters(str(tiny_model_dir), {"base": None}, problems(), "math", spec, {}, home)


def test_a_bos_the_server_adds_is_not_sent_twice():
    """A tokenizer that adds a BOS when it encodes text: the BOS its template writes is left out
    of the text sent, so the server's tokens are the student's."""
    from tiny import build_tokenizer
    from tokenizers.processors import TemplateProcessing

    tokenizer = build_tokenizer()
    bos = tokenizer.bos_token
    tokenizer.chat_template = bos + CUSTOM_TEMPLATE
    tokenizer._tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.bos_token_id)]
    )
    problem = problems()[0]
    text, tokens = served_prompt(tokenizer, problem, "math")
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": problem.question}], tokenize=False, add_generation_prompt=True
    )
    assert full.startswith(bos) and not text.startswith(bos)
    own = tokenizer(full, add_special_tokens=False).input_ids
    assert tokenizer(text).input_ids == own and tokens == len(own)
    tokenizer._tokenizer.post_processor = None  # no BOS added: the text goes as rendered
    assert served_prompt(tokenizer, problem, "math")[0] == full


def test_the_endpoint_is_where_students_answer_not_what_they_are(tmp_path):
    """`eval.endpoint` does not enter the recipe's identity (its run folder), and it is checked
    like a teacher's endpoint."""
    from factory.recipe import RecipeError

    body = (Path(__file__).parents[1] / "recipes" / "quickstart.yaml").read_text()
    plain, with_endpoint = tmp_path / "plain.yaml", tmp_path / "served.yaml"
    plain.write_text(body)
    endpoint = "\neval:\n  endpoint:\n    base_url: [http://a:8000/v1, http://b:8000/v1]\n"
    with_endpoint.write_text(body + endpoint + "    models: {smollm2-135m-base: base}\n")
    recipe = load_recipe(with_endpoint)
    assert recipe.eval.endpoint.base_url == ["http://a:8000/v1", "http://b:8000/v1"]
    assert recipe.hash == load_recipe(plain).hash
    assert "endpoint" not in json.dumps(recipe.model_dump(mode="json"))
    with_endpoint.write_text(body + endpoint + "    concurrency: 1\n")
    with pytest.raises(RecipeError, match="eval.endpoint.concurrency: 2 replicas need"):
        load_recipe(with_endpoint)
    with_endpoint.write_text(body + "\neval:\n  endpoint: {models: {a: b}}\n")
    with pytest.raises(RecipeError, match="eval.endpoint.base_url"):
        load_recipe(with_endpoint)


@pytest.mark.slow
def test_a_run_evaluates_through_the_endpoint_and_says_so(tiny_model_dir, fake, tmp_path, home):
    """`run` with `eval.endpoint`: the base and the trained student answer through the server,
    under their names, and the card and report say the answers were served."""
    import yaml
    from huggingface_hub import ModelCard
    from test_train import toy_recipe

    from factory.run import run_recipe

    path = toy_recipe(tmp_path, tiny_model_dir, name="served")
    recipe = yaml.safe_load(path.read_text())
    recipe["eval"] |= {"max_new_tokens": 12, "endpoint": {"base_url": fake.base_url}}
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    done, (entry,) = run_recipe(load_recipe(path), home)
    assert {b["model"] for b in fake.requests} == {str(tiny_model_dir), "tiny-answer-only-seed-0"}
    assert len(fake.requests) == 2 * 8 and {b["max_tokens"] for b in fake.requests} == {12}
    metrics = json.loads((Path(entry.release) / EVAL_METRICS).read_text())
    assert metrics["served_model"] == "tiny-answer-only-seed-0" and fake.base_url[:16] not in (
        json.dumps(metrics)
    )
    assert metrics["answered"] == metrics["total"] == 8
    card = ModelCard.load(Path(entry.release) / "README.md")
    assert "greedy\ndecoding by an OpenAI-compatible server, at most 12 new tokens" in card.text
    assert "/ served" in (done.run.report / "report.md").read_text()


@pytest.mark.slow
def test_a_refused_request_is_not_mistaken_for_a_missing_model(tiny_model_dir, fake, home):
    """A 400 (a prompt longer than the server's context, say) names the student and the
    server's reason, without the serving command a missing model gets."""
    fake.faults = ["400"]
    spec = served(EvalSpec(), fake.base_url, concurrency=1)
    with pytest.raises(EndpointError) as raised:
        evaluate_adapters(str(tiny_model_dir), {"base": None}, problems(), "math", spec, {}, home)
    message = str(raised.value)
    assert f"{fake.base_url} refused a request of base" in message and "injected 400" in message
    assert "vllm serve" not in message
