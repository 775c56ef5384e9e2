"""The tiny offline model and the real `transformers serve` endpoint the other tests rely on."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import EOS, build_tiny_model, start_transformers_serve

pytestmark = pytest.mark.slow  # starts servers or trains models

PROBLEM = [{"role": "user", "content": "Ann has 3 apples. Ben gives her 4 more. How many now?"}]
SOLUTION = [{"role": "assistant", "content": "Step 1: 3 + 4 = 7.\nThe answer is 7."}]


def test_tiny_model_loads_and_generates(tiny_model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    generation = GenerationConfig.from_pretrained(tiny_model_dir)

    assert (tiny_model_dir / "model.safetensors").is_file()
    assert model.config.model_type == "llama" and model.dtype == torch.float32
    assert model.config.vocab_size == len(tokenizer)
    assert 200 < len(tokenizer) <= 1000
    assert generation.eos_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids(EOS)
    assert generation.pad_token_id == tokenizer.pad_token_id != tokenizer.eos_token_id
    inputs = tokenizer.apply_chat_template(
        PROBLEM, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]


def test_build_is_deterministic_per_seed(tmp_path: Path, tiny_model_dir: Path):
    again = build_tiny_model(tmp_path / "same", seed=0)
    other = build_tiny_model(tmp_path / "other", seed=1)

    weights = "model.safetensors"
    assert (again / weights).read_bytes() == (tiny_model_dir / weights).read_bytes()
    assert (other / weights).read_bytes() != (tiny_model_dir / weights).read_bytes()
    tokenizer = "tokenizer.json"
    assert (other / tokenizer).read_text() == (tiny_model_dir / tokenizer).read_text()


def test_chat_template_renders_prompt_completion(tiny_model_dir: Path):
    from transformers import AutoTokenizer
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tokenizer.apply_chat_template(PROBLEM + SOLUTION, tokenize=False)
    assert text == (
        "<|im_start|>user\nAnn has 3 apples. Ben gives her 4 more. How many now?<|im_end|>\n"
        "<|im_start|>assistant\nStep 1: 3 + 4 = 7.\nThe answer is 7.<|im_end|>\n"
    )
    prompt = tokenizer.apply_chat_template(PROBLEM, add_generation_prompt=True)["input_ids"]
    full = tokenizer.apply_chat_template(
        PROBLEM + SOLUTION, return_dict=True, return_assistant_tokens_mask=True
    )
    # The prompt tokenizes as a prefix of prompt + completion (what TRL's completion-only loss
    # needs), and the assistant mask covers exactly the completion and its end-of-turn token.
    assert full["input_ids"][: len(prompt)] == prompt
    masked = [t for t, m in zip(full["input_ids"], full["assistant_masks"], strict=True) if m]
    assert masked == full["input_ids"][len(prompt) : -1]
    assert tokenizer.decode(masked) == SOLUTION[0]["content"] + EOS
    assert is_chat_template_stop_token_trained(tokenizer)


@pytest.fixture(scope="module")
def client(openai_server):
    from openai import OpenAI

    return OpenAI(base_url=openai_server.base_url, api_key="x", max_retries=0, timeout=60)


def test_served_chat_completion_has_text_and_usage(openai_server, client):
    response = client.chat.completions.create(
        model=openai_server.model, messages=PROBLEM, max_tokens=12, temperature=0
    )

    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert response.usage.prompt_tokens > 10
    assert 0 < response.usage.completion_tokens <= 12
    total = response.usage.prompt_tokens + response.usage.completion_tokens
    assert response.usage.total_tokens == total


def test_served_max_tokens_truncates_with_length(openai_server, client):
    response = client.chat.completions.create(
        model=openai_server.model, messages=PROBLEM, max_tokens=5, temperature=0
    )

    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 5


def test_served_greedy_requests_are_identical(openai_server, client):
    def ask() -> str:
        response = client.chat.completions.create(
            model=openai_server.model, messages=PROBLEM, max_tokens=16, temperature=0
        )
        return response.choices[0].message.content

    assert ask() == ask()


def test_serve_failure_reports_the_server_log(tmp_path: Path):
    with pytest.raises(RuntimeError, match="exited with code") as error:
        start_transformers_serve(tmp_path / "no-such-model", timeout=60)
    log = str(error.value).split("--- server log ---", 1)[1]
    assert "Traceback" in log and "no-such-model" in log
