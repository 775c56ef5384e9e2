"""Batched local generation with transformers: left padding, greedy or sampled, one call per batch.

Shared by the `transformers` teacher and by evaluation, so both decode the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_for_generation(name_or_path: str, home: Path, dtype: str = "float32"):
    """A model in eval mode, its weights in `dtype`, and its tokenizer set up for left-padded
    batches."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from factory.models import resolve_model

    transformers_logging.disable_progress_bar()  # weight loading is not a long loop of ours
    path = resolve_model(name_or_path, home)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    return model.eval(), tokenizer


# Tokens decoded between two looks at which rows have finished (see `generate_batch`).
SEGMENT_TOKENS = 16


def generate_batch(
    model,
    tokenizer,
    conversations: list[list[dict]],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    row_limits: list[int] | None = None,
    adapter_names: list[str] | None = None,
    segment: int | None = None,
) -> list[dict[str, Any]]:
    """A batch of chats decoded together; a response per chat, in order. `row_limits` bounds
    each row's answer below `max_new_tokens`; `adapter_names` picks each row's PEFT adapter.

    A static batch decodes every row until its longest answer ends, and on a CPU a finished
    row costs as much as a live one. So the batch is decoded `segment` tokens at a time
    (`SEGMENT_TOKENS` unless given), and between segments the rows that stopped or reached their
    bound leave it: their KV cache rows are dropped (`Cache.batch_select_indices`) and
    `generate` carries on from the cache for the rest. It is the same computation on fewer
    rows: in float32, greedy answers are those of one uninterrupted call (in bf16 another batch
    shape can round differently)."""
    import torch

    from factory.kv_cache import growing_cache

    prompts = [
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        for messages in conversations
    ]
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}
    options = sampling if temperature > 0 else {"do_sample": False}
    limits = row_limits or [max_new_tokens] * len(prompts)
    stop_ids = _stop_ids(model, tokenizer)
    if seed is not None:
        torch.manual_seed(seed)
    segment = segment or SEGMENT_TOKENS
    ids, mask, cache = inputs["input_ids"], inputs["attention_mask"], growing_cache(model)
    live, answers = list(range(len(prompts))), [[] for _ in prompts]
    with torch.inference_mode():
        while live:
            steps = min(segment, max(limits[i] - len(answers[i]) for i in live))
            rows = {"adapter_names": [adapter_names[i] for i in live]} if adapter_names else {}
            output = model.generate(
                input_ids=ids,
                attention_mask=mask,
                cache=cache,
                max_new_tokens=steps,
                pad_token_id=tokenizer.pad_token_id,
                return_dict_in_generate=True,
                **options,
                **rows,
            )
            new = output.sequences[:, ids.shape[1] :]
            going = []
            for k, (row, tokens) in enumerate(zip(live, new.tolist(), strict=True)):
                answers[row] += tokens
                if len(answers[row]) < limits[row] and not stop_ids & set(tokens):
                    going.append(k)
            ids, cache = output.sequences, output.cache
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], new.shape[1])], dim=1)
            if len(going) < len(live):  # rows left: drop them, or stop when none is left
                keep = torch.tensor(going, dtype=torch.long)
                ids, mask, live = ids[keep], mask[keep], [live[k] for k in going]
                if live:
                    cache.batch_select_indices(keep)
    return [
        _response(tokenizer, row[:limit], stop_ids, inputs, i)
        for i, (row, limit) in enumerate(zip(answers, limits, strict=True))
    ]


def _stop_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return ids | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())


def _response(tokenizer, tokens: list[int], stop_ids: set[int], inputs, index: int) -> dict:
    """One row's answer, its thinking counted (`with_thinking`)."""
    end = next((i for i, t in enumerate(tokens) if t in stop_ids), None)
    generated = tokens if end is None else tokens[:end]
    text = tokenizer.decode(generated, skip_special_tokens=True).strip()
    usage = {
        "prompt_tokens": int(inputs["attention_mask"][index].sum()),
        "completion_tokens": len(generated),
    }
    finish = "length" if end is None else "stop"
    return with_thinking(tokenizer, {"text": text, "finish_reason": finish, "usage": usage})


def with_thinking(tokenizer, response: dict) -> dict:
    """`response` with whether its thinking (`<think>`...) closed, and where it thinks, the
    thinking's tokens in `tokenizer` (`usage.reasoning_tokens`)."""
    from factory.answers import split_thinking

    thinking, _, closed = split_thinking(response["text"])
    if thinking is not None:
        tokens = len(tokenizer(thinking, add_special_tokens=False).input_ids)
        response = {**response, "usage": {**response["usage"], "reasoning_tokens": tokens}}
    return {**response, "thinking_closed": closed}
