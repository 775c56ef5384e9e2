"""Evaluation through an OpenAI-compatible server (`eval.endpoint`) instead of in-process.

A server such as vLLM with the base model and the students as LoRA modules answers for every
student, each chosen by its served model name (`served_names`; `vllm_command` prints the command
that serves them). Each prompt is rendered here with the chat template the student was trained
with (the tokenizer saved with its adapter, as in-process) and sent as text to `/v1/completions`,
greedy and bounded by the student's answer bound, so the server's own template never enters; a
server that counts other prompt tokens than the student's tokenizer is reported. The answers are
read and scored as in-process ones are (factory/scores.py). Requests go through the teacher's
replica pool (factory/replicas.py): its clients, retries, failover and concurrency.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from factory.models import is_adapter
from factory.questions import student_messages
from factory.replicas import (
    ReplicaPool,
    ReplicasDown,
    ask_checked,
    endpoint_key,
    replica_fault,
)
from factory.scores import score
from factory.secrets import redact, watch

log = logging.getLogger(__name__)
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM's --max-lora-rank accepts


class EndpointError(RuntimeError):
    """An evaluation endpoint that cannot answer for a student (unreachable, unknown model)."""


def evaluate_served(
    base_model: str,
    adapters: dict,
    problems: list,
    task: str,
    endpoint,
    outs: dict | None,
    home: Path,
    limits: dict[str, int],
) -> dict:
    """`evaluate_adapters` through `endpoint`: label -> metrics, each student's predictions and
    metrics written to `outs[label]` as in-process, its answers bounded by `limits[label]`.
    Every student's requests share the endpoint's concurrency; a student whose answers all
    arrived is written even when another's failed (`EndpointError` then names them)."""
    names = served_names(base_model, adapters, endpoint)
    tokenizers = {label: student_tokenizer(base_model, f, home) for label, f in adapters.items()}
    prompts = {
        label: [served_prompt(tokenizers[label], p, task) for p in problems] for label in adapters
    }
    answers = _answers(endpoint, names, prompts, limits, base_model, adapters, home)
    results, missing = {}, {}
    for label in adapters:
        if len(answers[label]) < len(problems):
            missing[label] = len(problems) - len(answers[label])
            continue
        _check_prompt_tokens(label, names[label], prompts[label], answers[label], problems)
        outputs = {i: _response(tokenizers[label], a) for i, a in answers[label].items()}
        facts = {"max_new_tokens": limits[label], "served_model": names[label]}  # no URL: the
        # metrics are published with the student, and a server's address is nobody's business
        results[label] = score(problems, outputs, task, (outs or {}).get(label), facts)
    if missing:
        short = ", ".join(f"{label} ({n} unanswered)" for label, n in missing.items())
        raise EndpointError(f"the endpoint left students without answers: {short}; re-run")
    return results


def served_names(base_model: str, adapters: dict, endpoint) -> dict[str, str]:
    """label -> the model name a student is asked under: `endpoint.models` of its default name,
    which is the base model's Hub id (or path) for the base and the label, dashed, for the rest."""
    from factory.models import hub_id_for

    base = hub_id_for(base_model) or base_model
    default = {
        label: base if folder is None else re.sub(r"\s+", "-", label.strip())
        for label, folder in adapters.items()
    }
    return {label: endpoint.models.get(name, name) for label, name in default.items()}


def vllm_command(base_model: str, adapters: dict, names: dict, home: Path) -> str:
    """The `vllm serve` command that serves the base model the students were trained on (for
    an alias, its converted folder in the home, not the Hub's weights) under the base's name,
    and every adapter under its own; a fully fine-tuned student is a model of its own, served
    apart."""
    import json

    from factory.models import hub_id_for, resolve_model

    base = resolve_model(base_model, home)
    base_name = next((names[k] for k, f in adapters.items() if f is None), None)
    base_name = base_name or hub_id_for(base_model) or base_model
    command = [f"vllm serve {base}"] + ([f"--served-model-name {base_name}"] * (base_name != base))
    loras = {names[k]: f for k, f in adapters.items() if f is not None and is_adapter(f)}
    if loras:
        config = [json.loads((Path(f) / "adapter_config.json").read_text()) for f in loras.values()]
        top = max(c["r"] for c in config)
        rank = next((r for r in LORA_RANKS if r >= top), top)
        command += [f"--enable-lora --max-lora-rank {rank} --max-loras {len(loras)} --lora-modules"]
        command += [f"{name}={Path(folder).resolve()}" for name, folder in loras.items()]
    apart = [
        f"vllm serve {Path(f).resolve()} --served-model-name {names[k]}"
        for k, f in adapters.items()
        if f is not None and not is_adapter(f)
    ]
    return " \\\n    ".join(command) + "".join(f"\n{line}" for line in apart)


def student_tokenizer(base_model: str, folder, home: Path):
    """The tokenizer a student was trained with: its adapter's (or fully fine-tuned model's)
    saved one, else the base model's."""
    from transformers import AutoTokenizer

    from factory.models import resolve_model

    if folder is not None and (Path(folder) / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(resolve_model(base_model, home))


def served_prompt(tokenizer, problem, task: str) -> tuple[str, int]:
    """(the text to send, the prompt's tokens in-process): the student's chat rendered with its
    template. A tokenizer that adds a BOS when it encodes text gets the template's own BOS
    stripped, so a server that encodes the text (vLLM, `transformers serve`) does not double it."""
    messages = student_messages(problem.question, task=task, choices=problem.choices)
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    tokens = len(tokenizer(text, add_special_tokens=False).input_ids)
    bos = tokenizer.bos_token
    if (
        bos
        and text.startswith(bos)
        and tokenizer(text).input_ids[:2] == [tokenizer.bos_token_id] * 2
    ):
        text = text[len(bos) :]
    return text, tokens


def _answers(endpoint, names, prompts, limits, base_model, adapters, home) -> dict:
    """label -> {problem index: the endpoint's answer}, as many as arrived."""
    import openai

    watch(endpoint.api_key_env)
    if (api_key := endpoint_key(endpoint)) is None:
        raise EndpointError(
            f"eval.endpoint: environment variable {endpoint.api_key_env} is not set"
        )
    answers: dict[str, dict[int, dict]] = {label: {} for label in prompts}
    requests = [(label, i) for label, texts in prompts.items() for i in range(len(texts))]
    bad: Counter[str] = Counter()
    who = next(iter(prompts)) if len(prompts) == 1 else f"{len(prompts)} students"
    bar = tqdm(total=len(requests), desc=f"eval {who} (served)", unit="answer")

    async def ask(replica, request):
        label, i = request
        params = {
            "model": names[label],
            "prompt": prompts[label][i][0],
            "max_tokens": limits[label],
            "temperature": 0.0,
            "seed": 0,
        }
        return await ask_checked(replica, params, endpoint.max_retries, bad)

    def on_result(request, response):
        label, i = request
        answers[label][i] = response
        bar.update()

    def settle(replica, request, err):
        label = request[0]
        if type(err) is openai.APIConnectionError:  # one URL, its client's retries spent
            tries = endpoint.max_retries + 1
            reason = err.__cause__ or err
            raise EndpointError(redact(f"cannot reach {replica.url} ({reason}; {tries} tries)"))
        if isinstance(err, openai.NotFoundError):
            command = vllm_command(base_model, adapters, names, home)
            raise EndpointError(
                redact(
                    f"{replica.url} does not serve {label} (model {names[label]!r}): {err}\n"
                    f"serve every student under its name, e.g.:\n{command}\n"
                    "or map the names in eval.endpoint.models"
                )
            )
        if _refused(err):
            message = f"{replica.url} refused a request of {label} (model {names[label]!r}): {err}"
            raise EndpointError(redact(message))
        log.warning("%s: no answer for %s: %s", replica.url, label, redact(str(err)))

    pool = ReplicaPool(endpoint, api_key, ask, on_result, settle)
    try:
        asyncio.run(pool.run(requests))
    except ReplicasDown as down:
        raise EndpointError(f"eval.endpoint: {down}") from None
    finally:
        bar.close()
    if bad:
        log.warning("eval.endpoint: bad answers, asked again: %s", dict(bad))
    return answers


def _refused(err: Exception) -> bool:
    """A request error no retry can mend: the server refuses the request itself (a status that
    `replica_fault` does not blame on the server, i.e. a 4xx other than 408, 409 and 429)."""
    import openai

    return isinstance(err, openai.APIStatusError) and not replica_fault(err)


def _response(tokenizer, answer: dict) -> dict:
    """An endpoint's answer as in-process generation gives one."""
    from factory.inference import with_thinking

    text = answer["text"].strip()
    usage = dict(answer["usage"])
    if usage.get("completion_tokens") is None:
        usage["completion_tokens"] = len(tokenizer(text, add_special_tokens=False).input_ids)
    return with_thinking(
        tokenizer, {"text": text, "finish_reason": answer["finish_reason"], "usage": usage}
    )


def _check_prompt_tokens(label, name, prompts, answers, problems) -> None:
    """A warning when the server counted other prompt tokens than the student's tokenizer: it
    tokenizes the text differently, and its answers may differ from in-process ones."""
    off = [
        (i, answers[i]["usage"]["prompt_tokens"], prompts[i][1])
        for i in sorted(answers)
        if answers[i]["usage"].get("prompt_tokens") not in (None, prompts[i][1])
    ]
    if off:
        i, served, own = off[0]
        log.warning(
            "%s (%s): the endpoint counted other prompt tokens than the student's tokenizer on "
            "%d of %d problems (problem %s: %d, not %d); its answers may differ from in-process",
            label,
            name,
            len(off),
            len(answers),
            problems[i].id,
            served,
            own,
        )
