"""Reasoning-model thinking: where a teacher's answer holds it, the long completion made from it,
how a student's chat template takes it, and how long it runs.

A teacher's thinking comes in a message field (`reasoning`, `reasoning_content`: the response's
`reasoning`, see factory/responses.py) or inline in its text between a tag pair (`<think>` and
`</think>` unless the recipe names another). Long rows always carry it as `<think>\\n...\\n</think>`
then the answer, the convention of Qwen3, SmolLM3 and DeepSeek-R1; `thinking_form` says how a
student's own chat template wants it instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import mean, quantiles

from factory.answers import THINK_TAGS, split_thinking

FIELD_FORMS = ("reasoning_content", "thinking")  # assistant-message fields chat templates read
PROBE_PROMPT = [{"role": "user", "content": "What is 2 + 3?"}]
PROBE_THINKING, PROBE_ANSWER = "I add two and three, one at a time.", "The answer is 5."


@dataclass(frozen=True)
class Thinking:
    """A teacher answer split: its thinking (None without), the answer text around it, where
    the thinking was found (a message field's name, `inline`, or None), and whether the thinking
    never closed (cut off by `max_tokens`)."""

    reasoning: str | None
    answer: str
    source: str | None
    cut: bool


def split_response(response: dict, tags: tuple[str, str] = THINK_TAGS) -> Thinking:
    """The thinking of a teacher response: its message field, else an inline tag pair in its text
    (a prompt that opened the tag itself counts, `thinking_prefilled`); tags left in the text
    beside a field are thinking too, never answer."""
    text = response["text"]
    if response.get("thinking_prefilled"):
        text = f"{tags[0]}\n{text}"
    inline, answer, closed = split_thinking(text, tags)
    field = (response.get("reasoning") or "").strip()
    if field:
        joined = "\n\n".join(part for part in (field, inline) if part)
        return Thinking(joined, answer, response.get("reasoning_source"), not closed)
    return Thinking(inline, answer, "inline" if inline else None, not closed)


def long_completion(reasoning: str, answer: str) -> str:
    """A long row's completion: the thinking in `<think>` tags, then the answer."""
    opening, closing = THINK_TAGS
    return f"{opening}\n{reasoning}\n{closing}\n\n{answer}"


# --- students ---------------------------------------------------------------------------------


def thinking_form(tokenizer) -> str | None:
    """How the student's chat template takes an assistant turn's thinking: a message field it
    renders in its own convention (`reasoning_content`: Qwen3, LFM2.5, GPT-OSS; `thinking`),
    else `content` (the `<think>` tags in the text, rendered as they are), or None when the
    template drops the thinking (DeepSeek-R1-Distill's own; TRL's training template keeps it)."""
    return next((form for form in (*FIELD_FORMS, "content") if _keeps(tokenizer, form)), None)


def assistant_turn(reasoning: str | None, answer: str, form: str) -> dict:
    """The assistant message of a row in `form` (see `thinking_form`)."""
    if not reasoning:
        return {"role": "assistant", "content": answer}
    if form == "content":
        return {"role": "assistant", "content": long_completion(reasoning, answer)}
    return {"role": "assistant", "content": answer, form: reasoning}


def student_completion(completion: list[dict], form: str) -> list[dict]:
    """A dataset row's completion as the student's template wants it: a long row's thinking
    moves to the message field `form` names; anything else is unchanged."""
    (turn,) = completion
    reasoning, answer, closed = split_thinking(turn["content"])
    if form == "content" or not reasoning or not closed:
        return completion
    return [assistant_turn(reasoning, answer, form)]


def _keeps(tokenizer, form: str) -> bool:
    """Whether the template renders a turn in `form` with its thinking and answer, after the
    generation prompt (as TRL's prompt-completion training needs)."""
    turn = assistant_turn(PROBE_THINKING, PROBE_ANSWER, form)
    render = tokenizer.apply_chat_template
    try:
        head = render(PROBE_PROMPT, tokenize=False, add_generation_prompt=True)
        full = render([*PROBE_PROMPT, turn], tokenize=False)
    except Exception:  # a template that refuses the field (jinja2 errors have no common base)
        return False
    tail = full[len(head) :] if full.startswith(head) else ""
    return PROBE_THINKING in tail and PROBE_ANSWER in tail


# --- measuring --------------------------------------------------------------------------------


def distribution(values: list[int]) -> dict | None:
    """Mean and quartiles of `values` (thinking tokens or steps), or None when there are none."""
    if not values:
        return None
    low, median, high = (
        quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    )
    spread = {"min": min(values), "p25": low, "median": median, "p75": high, "max": max(values)}
    return {"n": len(values), "mean": _number(mean(values))} | {
        k: _number(v) for k, v in spread.items()
    }


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 1)


def thinking_stats(kept: list[dict]) -> dict | None:
    """Per config: how many kept rows carry thinking, where it was found, and the distribution
    of its length in tokens and steps, with the endpoint's own reasoning-token count."""
    rows = [t for t in kept if t.get("reasoning")]
    if not rows:
        return None
    sources: dict[str, int] = {}
    for t in rows:
        sources[t["reasoning_source"]] = sources.get(t["reasoning_source"], 0) + 1
    usages = [t.get("usage") or {} for t in rows]
    counted = [u["reasoning_tokens"] for u in usages if "reasoning_tokens" in u]
    return {
        "rows": len(rows),
        "sources": sources,
        "tokens": distribution([t["num_reasoning_tokens"] for t in rows]),
        "steps": distribution([t["num_reasoning_steps"] for t in rows]),
        "endpoint_tokens": distribution(counted),
    }
