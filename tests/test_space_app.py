"""The demo Space (`spaces/app.py`), run as the product runs it: copied into a Space folder next to
`answers.py` and a `space_config.json`, started with `python app.py` on loopback, and called
through `gradio_client`. The base is the tiny model, with two tiny LoRA adapters made here, and
the dataset a tiny folder in the layout `factory.build` writes. The students' answers must equal
what each model gives alone (greedy), although they come from one batched, per-row-adapter call.

The helpers are shared with tests/test_space_browser.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from factory.answers import extract_answer, is_correct

pytestmark = pytest.mark.slow  # starts servers or trains models

ROOT = Path(__file__).resolve().parents[1]
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MAX_NEW, MAX_INPUT = 12, 64
FREE_QUESTION = "Ann has 3 apples and buys 4 more. How many apples?"
TEST_PROBLEMS = [  # t1's gold becomes what one student answers (`make_space`)
    {"id": "t1", "question": "Bo has 2 cats and gets 2 more. How many cats?", "answer": "4"},
    {"id": "t2", "question": "A box has 10 pens; 6 are taken. How many are left?", "answer": "4"},
]
TRAIN_PROBLEM = {
    "id": "p1",
    "question": "Sue had 9 stamps and gave away 2. How many?",
    "answer": "7",
}
COT = "Step 1: Sue starts with 9 stamps.\nStep 2: 9 - 2 = 7.\nThe answer is 7."


# ---------------------------------------------------------------------------------------------
# building a Space folder


def make_adapter(base_dir: Path, out: Path, seed: int, with_tokenizer: bool = False) -> Path:
    """A LoRA adapter for the tiny model whose (random, large) lora_B changes its greedy output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)  # lora_A's initialisation too
        peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS))
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape) * 0.5)
    peft.save_pretrained(out)
    if with_tokenizer:  # as training saves it: the tokenizer and chat template it used
        AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)
    return out


def make_dataset(folder: Path, test_problems: list[dict], cot_rows: list[dict]) -> Path:
    """A dataset folder as `factory.build` lays it out: `problems` (test split), `cot-L1`."""
    from factory.cards import dataset_configs
    from factory.shards import COT_FEATURES, PROBLEM_FEATURES, SHARD, write_parquet

    problems = [{"choices": None, "reference_rationale": None, **p} for p in test_problems]
    write_parquet(problems, folder / "problems" / SHARD.format(split="test"), PROBLEM_FEATURES)
    write_parquet(cot_rows, folder / "cot-L1" / SHARD.format(split="train"), COT_FEATURES)
    card = {"configs": dataset_configs({"cot-L1": {"kept": len(cot_rows)}}, ["test"])}
    (folder / "README.md").write_text(f"---\n{yaml.safe_dump(card)}---\n# tiny\n")
    return folder


def cot_row(problem: dict, completion: str) -> dict:
    """One `cot-L1` row in TRL's prompt-completion format plus the metadata columns."""
    return {
        "prompt": [{"role": "user", "content": problem["question"]}],
        "completion": [{"role": "assistant", "content": completion}],
        "id": problem["id"],
        "sample": 0,
        "question": problem["question"],
        "choices": None,
        "answer": problem["answer"],
        "predicted_answer": extract_answer(completion, "math"),
        "correct": True,
        "teacher": "tiny-teacher",
        "teacher_params": "{}",
        "format": "cot",
        "level": 1,
        "num_steps": 2,
        "num_tokens": 23,
        "finish_reason": "stop",
        "raw_output": completion,
        "pass_rate": 1.0,
        "source_config": "cot-L1",
        "contaminated_by": [],
        "replica": None,
    }


def space_config(base: Path, adapters: dict[str, Path], dataset: Path) -> dict:
    """A `space_config.json` in the schema `factory/space.py` writes."""
    return {
        "title": "tiny students",
        "description": "Two tiny random adapters on a tiny random model.",
        "task": "math",
        "base_model": str(base),
        "base_label": "tiny (base)",
        "tokenizer": None,
        "adapters": [
            {"label": label, "repo": str(path), "revision": None, "config": label, "card_url": None}
            for label, path in adapters.items()
        ],
        "dataset": {
            "repo": str(dataset),
            "revision": None,
            "url": None,
            "problems_config": "problems",
            "split": "test",
            "cot_configs": [
                {"name": "cot-L1", "teacher": "tiny-teacher", "format": "cot", "level": 1}
            ],
        },
        "leaderboard": [
            {
                "student": "tiny",
                "config": "cot-L1",
                "format": "cot",
                "level": 1,
                "teacher": "tiny-teacher",
                "accuracy": 0.4,
                "ci95": [0.17, 0.69],
                "base_accuracy": 0.3,
                "n": 10,
            },
            {
                "student": "tiny",
                "config": "cot-L3",
                "format": "cot",
                "level": 3,
                "teacher": "tiny-teacher",
                "accuracy": 0.5,
                "ci95": [0.24, 0.76],
                "base_accuracy": 0.3,
                "n": 10,
            },
        ],
        "max_input_tokens": MAX_INPUT,
        "max_new_tokens": MAX_NEW,
    }


def write_space(folder: Path, config: dict) -> Path:
    """The Space folder as the product writes it: app.py, answers.py, questions.py and
    space_config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "spaces" / "app.py", folder / "app.py")
    for module in ("answers.py", "questions.py"):
        shutil.copy(ROOT / "factory" / module, folder / module)
    (folder / "space_config.json").write_text(json.dumps(config, indent=2))
    return folder


def greedy_alone(base: Path, adapter: Path | None, question: str, max_new: int) -> str:
    """What one student answers on its own: a fresh model, the adapter alone, batch of one."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    model = PeftModel.from_pretrained(model, adapter) if adapter else model
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        out = model.eval().generate(**inputs, max_new_tokens=max_new, do_sample=False)
    tokens = out[0, inputs.input_ids.shape[1] :].tolist()
    end = tokens.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in tokens else None
    return tokenizer.decode(tokens[:end], skip_special_tokens=True)


@dataclass
class Space:
    """A Space folder built in tmp, its config, and what each student answers alone."""

    folder: Path
    config: dict
    base: Path
    adapters: dict[str, Path]
    expected: dict[str, list[str]]  # question -> [base, adapter 1, adapter 2] answers
    golds: dict[str, str]  # test problem id -> gold answer

    @property
    def labels(self) -> list[str]:
        return [self.config["base_label"], *self.adapters]


def make_space(tmp: Path, base: Path) -> Space:
    """Two adapters, a dataset whose test problem t1 has as gold what one student answers (so at
    least one panel is ✅ whatever the random weights say), and the Space folder."""
    adapters = {
        "cot-a": make_adapter(base, tmp / "adapter-a", seed=1, with_tokenizer=True),
        "cot-b": make_adapter(base, tmp / "adapter-b", seed=2),
    }
    students = [None, *adapters.values()]
    questions = [FREE_QUESTION, TEST_PROBLEMS[0]["question"], TRAIN_PROBLEM["question"]]
    expected = {q: [greedy_alone(base, a, q, MAX_NEW) for a in students] for q in questions}
    answers = [extract_answer(text, "math") for text in expected[TEST_PROBLEMS[0]["question"]]]
    gold = next((a for a in answers[1:] + answers[:1] if a is not None), None)
    assert gold, f"no student states a number for t1, so nothing can be ✅: {answers}"
    test_problems = [{**TEST_PROBLEMS[0], "answer": gold}, *TEST_PROBLEMS[1:]]
    golds = {p["id"]: p["answer"] for p in test_problems}
    dataset = make_dataset(tmp / "dataset", test_problems, [cot_row(TRAIN_PROBLEM, COT)])
    config = space_config(base, adapters, dataset)
    return Space(write_space(tmp / "space", config), config, base, adapters, expected, golds)


# ---------------------------------------------------------------------------------------------
# running it


@dataclass
class Running:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def start_space(folder: Path, timeout: float = 120.0) -> Running:
    """`python app.py` in the Space folder on a free loopback port; returns once it answers."""
    from tiny import free_port

    port = free_port()
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    log_path = folder / "app.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Running(f"http://127.0.0.1:{port}/", process, log_path)
    deadline = time.monotonic() + timeout
    while not _answers(running.url + "config"):
        if process.poll() is not None or time.monotonic() > deadline:
            running.stop()
            pytest.fail(f"the Space did not start:\n{running.log()[-4000:]}")
        time.sleep(0.5)
    return running


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def space(tmp_path_factory, tiny_model_dir) -> Space:
    return make_space(tmp_path_factory.mktemp("space"), tiny_model_dir)


@pytest.fixture(scope="module")
def running(space):
    handle = start_space(space.folder)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def client(running):
    from gradio_client import Client

    return Client(running.url, verbose=False, analytics_enabled=False, download_files=False)


# ---------------------------------------------------------------------------------------------
# tests


def test_students_stream_one_batched_answer_each_equal_to_each_alone(space, client):
    n = len(space.labels)
    job = client.submit(FREE_QUESTION, None, MAX_NEW, api_name="/answer")
    final = job.result(timeout=60)
    texts, marks, results = final[:n], final[n : 2 * n], final[2 * n]
    assert list(texts) == space.expected[FREE_QUESTION]  # per-row adapters == each alone
    assert all(texts) and len(set(texts)) == n, texts  # every student answered, differently
    assert [r["student"] for r in results] == space.labels
    assert [r["text"] for r in results] == list(texts)
    assert all(r["correct"] is None for r in results)  # a free question: nothing to score
    assert all(m.startswith("**Answer:**") and "✅" not in m and "❌" not in m for m in marks)
    partial = [o for o in job.outputs() if o[2 * n] is None]
    assert len(partial) >= 2, "the answers were not streamed"
    assert all("generating" in m for o in partial for m in o[n : 2 * n])
    for output in partial:
        assert all(t.startswith(p) for p, t in zip(output[:n], texts, strict=True))
    assert any(0 < len(p) < len(t) for o in partial for p, t in zip(o[:n], texts, strict=True))


def test_dataset_problem_is_scored_against_its_gold(space, client):
    question, table, note = client.predict("test/t1", api_name="/pick")
    assert question == TEST_PROBLEMS[0]["question"]
    assert table["data"] == [] and "No teacher CoT" in note
    n, gold = len(space.labels), space.golds["t1"]
    final = client.predict(question, "test/t1", MAX_NEW, api_name="/answer")
    assert list(final[:n]) == space.expected[question]
    for text, line, result in zip(final[:n], final[n : 2 * n], final[2 * n], strict=True):
        correct = is_correct(extract_answer(text, "math"), gold, "math")
        assert result["correct"] is correct
        assert ("✅" if correct else "❌") in line and f"gold `{gold}`" in line
    assert any(r["correct"] for r in final[2 * n])  # the gold is what one student answers

    edited = client.predict(question + " Explain.", "test/t1", MAX_NEW, api_name="/answer")
    assert all(r["correct"] is None for r in edited[2 * n])  # edited: no longer that problem


def test_train_problem_shows_the_teacher_cots(space, client):
    question, table, note = client.predict("train/p1", api_name="/pick")
    assert question == TRAIN_PROBLEM["question"] and "1 teacher CoT" in note
    rows = [dict(zip(table["headers"], row, strict=True)) for row in table["data"]]
    assert rows == [
        {
            "config": "cot-L1",
            "teacher": "tiny-teacher",
            "format": "cot",
            "level": 1,
            "steps": 2,
            "tokens": 23,
            "correct": "✅",
            "completion": COT,
        }
    ]
    n = len(space.labels)
    final = client.predict(question, "train/p1", MAX_NEW, api_name="/answer")
    assert list(final[:n]) == space.expected[question]
    assert all("students saw it" in line for line in final[n : 2 * n])


def test_leaderboard_rows(space, client):
    assert client.predict(api_name="/leaderboard") == space.config["leaderboard"]


def test_input_and_new_token_caps(space, client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=f"at most {MAX_INPUT}"):
        client.predict("How many apples? " * 40, None, MAX_NEW, api_name="/answer")
    with pytest.raises(AppError):  # the slider's maximum is the config's cap
        client.predict(FREE_QUESTION, None, MAX_NEW + 1, api_name="/answer")
    short = client.predict(FREE_QUESTION, None, 3, api_name="/answer")
    expected = [
        greedy_alone(space.base, a, FREE_QUESTION, 3) for a in (None, *space.adapters.values())
    ]
    assert list(short[: len(space.labels)]) == expected


@pytest.fixture(scope="module")
def app(space):
    """`app.py` imported in-process from the Space folder (its `answers` beside it)."""
    sys.path.insert(0, str(space.folder))
    try:
        spec = importlib.util.spec_from_file_location("space_app", space.folder / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(space.folder))
    return module


def test_prompts_render_as_training_rendered_them(app):
    """The app renders questions with the factory's own module, copied beside it."""
    from factory.prompts import render_question

    assert app.render_question.__module__ == "questions"
    for question, task, choices in [
        (" What is 2 + 2? ", "math", None),
        ("Is 7 prime?", "yes_no", None),
        ("Pick one.", "multiple_choice", ["(A) 3", "B. 4", "five", "C) six"]),
    ]:
        expected = render_question(question, task, choices)
        assert app.render_question(question, task, choices) == expected


def test_leaderboard_table_and_plot_series(app, space):
    table, plots = app.leaderboard_frames(space.config["leaderboard"])
    assert list(table["config"]) == ["cot-L1", "cot-L3"]
    assert list(table["accuracy"]) == ["40.0% [17.0, 69.0]", "50.0% [24.0, 76.0]"]
    assert list(table["base_accuracy"]) == ["30.0%", "30.0%"]
    assert plots["tiny"].values.tolist() == [
        ["cot", 1, 0.4],
        ["cot", 3, 0.5],
        ["base model", 1, 0.3],  # the base as a flat reference line across the levels
        ["base model", 6, 0.3],
    ]


def test_links_go_to_the_hub_for_repo_ids_and_name_local_folders(app, space):
    config = {
        **space.config,
        "base_model_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "adapters": [
            {"label": "cot-L1", "repo": "org/s-cot-L1", "card_url": None},
            {"label": "cot-L3", "repo": "/x/s-cot-L3", "repo_id": "org/s-cot-L3"},
            {"label": "local", "repo": "/x/local", "card_url": "https://example.org/card"},
        ],
        "dataset": {"repo": "org/cots", "url": None},
    }
    text = app.links(config)
    assert "[HuggingFaceTB/SmolLM2-135M-Instruct](https://huggingface.co/HuggingFaceTB/" in text
    assert "[org/s-cot-L1](https://huggingface.co/org/s-cot-L1)" in text
    assert "[org/s-cot-L3](https://huggingface.co/org/s-cot-L3)" in text
    assert "[/x/local](https://example.org/card)" in text
    assert "[org/cots](https://huggingface.co/datasets/org/cots)" in text
    assert f"`{space.config['dataset']['repo']}`" in app.links(space.config)  # a local folder


def test_stream_caps_new_tokens_and_stops_when_the_visitor_leaves(app, space):
    students = app.Students(space.config)
    ids = students.encode(FREE_QUESTION)
    assert list(students.stream(ids, 10_000))[-1] == space.expected[FREE_QUESTION]  # capped

    students.max_new = 500
    steps = []
    students.model.get_base_model().register_forward_hook(lambda *_: steps.append(1))
    stream = students.stream(ids, 500)
    next(stream)
    stream.close()  # what Gradio does when the visitor goes away
    assert students.lock.acquire(timeout=30)  # generation ended, its PEFT hooks are gone
    assert len(steps) < 20, "generation went on after the visitor left"
