"""Tiny offline models and a real `transformers serve` endpoint for tests and benchmarks.

`build_tiny_model` writes a random Llama causal LM with a byte-level BPE tokenizer trained here,
on a small built-in corpus, so transformers, TRL, PEFT and `transformers serve` load it with no
network. `start_transformers_serve` runs `transformers serve` on loopback for such a folder.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BOS, EOS, PAD, IM_START = "<|endoftext|>", "<|im_end|>", "<|pad|>", "<|im_start|>"
SPECIAL_TOKENS = [BOS, IM_START, EOS, PAD]
VOCAB_SIZE = 640

# ChatML. The assistant's content and its end-of-turn token sit inside {% generation %} markers,
# which TRL's `assistant_only_loss` needs (transformers turns them into `assistant_masks`).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>' }}"
    "{%- endif %}"
    "{{- '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_NAMES = ["Ann", "Ben", "Carla", "Dev", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jack"]
_ITEMS = ["apples", "books", "marbles", "pencils", "stickers", "cookies", "coins", "cards"]


def _word_problem(rng: random.Random) -> tuple[str, str]:
    """One arithmetic word problem and a step-by-step solution ending in `The answer is N.`"""
    name, other = rng.sample(_NAMES, 2)
    item = rng.choice(_ITEMS)
    a, b = rng.randint(2, 60), rng.randint(1, 40)
    if rng.random() < 0.5:
        question = f"{name} has {a} {item}. {other} gives {name} {b} more. How many {item} now?"
        steps = f"Step 1: {name} starts with {a} {item}.\nStep 2: {a} + {b} = {a + b}."
        answer = a + b
    else:
        a += b
        question = f"{name} had {a} {item} and gave {b} to {other}. How many {item} are left?"
        steps = f"Step 1: {name} starts with {a} {item}.\nStep 2: {a} - {b} = {a - b}."
        answer = a - b
    return question, f"Let's think step by step.\n{steps}\nThe answer is {answer}."


def training_corpus(n_problems: int = 400) -> list[str]:
    """The fixed text the tiny tokenizer is trained on: word problems rendered as chats."""
    rng = random.Random(1234)
    texts = [
        "You are a helpful assistant. Answer the question and explain your reasoning.",
        "Hello! How can I help you today? Please solve the following problem.",
        "Multiply, divide, add and subtract: 3 * 4 = 12, 12 / 4 = 3, 7 - 2 = 5. Yes or no?",
    ]
    for _ in range(n_problems):
        question, solution = _word_problem(rng)
        texts.append(f"{IM_START}user\n{question}{EOS}\n{IM_START}assistant\n{solution}{EOS}\n")
    return texts


def build_tokenizer():
    """A byte-level BPE `PreTrainedTokenizerFast` with ChatML special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(training_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=[IM_START],
        model_max_length=2048,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(path: Path, seed: int = 0) -> Path:
    """Write a tiny random Llama chat model (safetensors + tokenizer) to `path`; return `path`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tokenizer = build_tokenizer()
    ids = {
        name: tokenizer.convert_tokens_to_ids(tok)
        for name, tok in [("bos", BOS), ("eos", EOS), ("pad", PAD)]
    }
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=ids["bos"],
        eos_token_id=ids["eos"],
        pad_token_id=ids["pad"],
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"]
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# ---------------------------------------------------------------------------------------------
# transformers serve


@dataclass
class ServeHandle:
    """A running `transformers serve` process; `model` is the name requests must use."""

    base_url: str
    model: str
    process: subprocess.Popen
    log_path: Path
    startup_s: float = 0.0
    _log_file: object = field(default=None, repr=False)
    _remove_log: bool = field(default=False, repr=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server and everything it started (its own process group)."""
        _stop_group(self.process, timeout)
        if self._log_file is not None:
            self._log_file.close()
        if self._remove_log:
            shutil.rmtree(self.log_path.parent, ignore_errors=True)

    def __enter__(self) -> ServeHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve_command() -> list[str]:
    script = Path(sys.executable).parent / "transformers"
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-c", "from transformers.cli.transformers import main; main()", "serve"]


def _stop_group(process: subprocess.Popen, timeout: float) -> None:
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _is_healthy(url: str) -> bool:
    try:
        with _NO_PROXY.open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_transformers_serve(
    model_dir: Path | None,
    port: int | None = None,
    timeout: float = 180.0,
    extra_args: tuple = (),
    log_dir: Path | None = None,
) -> ServeHandle:
    """Start `transformers serve` on 127.0.0.1 with `model_dir` preloaded (FORCE_MODEL) on CPU;
    without one, it loads whichever model folder a request names (by its path).

    Returns once `/health` answers (the forced model is loaded before the server listens).
    Raises `RuntimeError` with the server's log if it exits or is not ready within `timeout`.
    The log goes to `log_dir/serve.log` when given (kept), else to a temporary folder that
    `ServeHandle.stop` removes.
    """
    port = port or free_port()
    model = str(Path(model_dir).resolve()) if model_dir is not None else ""
    log_path = Path(log_dir or tempfile.mkdtemp(prefix="transformers-serve-")) / "serve.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "w")  # noqa: SIM115 - closed by ServeHandle.stop
    command = [
        *_serve_command(),
        *([model] if model else []),
        "--device",
        "cpu",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra_args,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.monotonic()
    process = subprocess.Popen(
        command, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    handle = ServeHandle(
        f"http://127.0.0.1:{port}/v1",
        model,
        process,
        log_path,
        _log_file=log_file,
        _remove_log=log_dir is None,
    )
    health = f"http://127.0.0.1:{port}/health"
    while not _is_healthy(health):
        problem = None
        if process.poll() is not None:
            problem = f"exited with code {process.returncode}"
        elif time.monotonic() - started > timeout:
            problem = f"was not ready after {timeout:.0f} s"
        if problem:
            _stop_group(process, 10.0)
            log = handle.log()
            handle.stop()
            raise RuntimeError(
                f"transformers serve {problem}: {' '.join(command)}\n"
                f"--- server log ---\n{log[-6000:]}"
            )
        time.sleep(0.25)
    handle.startup_s = time.monotonic() - started
    return handle
