"""What an endpoint answered: a chat or text completion, or something that only looks like one.

A 200 answer is checked before anything keeps it: an HTML page (a proxy's), an event stream, a
body that is not JSON, no choices, null or empty content, more text than `max_tokens` allows, or
`usage` that says so, is a `BadResponse`: retried by the teacher, never cached.

A reasoning model's thinking comes in its own message field where the server parses it out
(`reasoning`: vLLM, OpenRouter, huggingface_hub; `reasoning_content`: the DeepSeek API, older
vLLM): the response keeps it as `reasoning`, with the field's name as `reasoning_source`. An
answer with thinking and no content (cut off by `max_tokens` while thinking) is an answer.
"""

from __future__ import annotations

import json
from collections import Counter

from factory.secrets import redact

MAX_CHARS_PER_TOKEN = 16  # tokenizer-free bound: a longer answer cannot fit in max_tokens
COUNTABLE = {"page", "stream", "completion", "timeout"}  # failure kinds that take a plural
REASONING_FIELDS = ("reasoning", "reasoning_content")  # where servers put a model's thinking


class BadResponse(Exception):
    """A 200 answer that is not an answer to the request: retried, never cached."""

    def __init__(self, kind: str, detail: str):
        super().__init__(redact(f"{kind}: {detail}"))
        self.kind = kind


def parse_completion(content_type: str, body: str) -> dict:
    """The response of a chat (or text) completion body; `BadResponse` for a body that is not
    one."""
    try:
        data = json.loads(body)
    except ValueError:
        raise BadResponse(_body_kind(content_type, body), _excerpt(content_type, body)) from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadResponse("no choices", _excerpt(content_type, body))
    message, usage = choices[0].get("message"), data.get("usage")
    if message is None and "text" in choices[0]:  # a text completion (`/v1/completions`)
        message = {"content": choices[0]["text"]}
    message, usage = (x if isinstance(x, dict) else {} for x in (message, usage))
    response = {
        "text": message.get("content"),
        "finish_reason": choices[0].get("finish_reason") or "stop",
        "usage": _usage(usage),
    }
    field = next((f for f in REASONING_FIELDS if message.get(f)), None)
    if field:
        response |= {"reasoning": message[field], "reasoning_source": field}
    return response


def _usage(usage: dict) -> dict:
    """The token counts of `usage`, with the thinking's (`reasoning_tokens`) when it says."""
    counts = {k: usage[k] for k in ("prompt_tokens", "completion_tokens") if k in usage}
    details = usage.get("completion_tokens_details")
    if isinstance(details, dict) and details.get("reasoning_tokens") is not None:
        counts["reasoning_tokens"] = details["reasoning_tokens"]
    return counts


def check_response(response: dict, max_tokens: int) -> dict:
    """`response`, redacted, if it answers a request for `max_tokens`; else `BadResponse`."""
    text, usage, reasoning = response["text"], response["usage"], response.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, str):
        raise BadResponse("invalid reasoning", f"the message's thinking is {reasoning!r:.40}")
    thought = bool(reasoning and reasoning.strip())
    if text is None and thought:  # all thinking: cut off before the answer
        text = ""
    if not isinstance(text, str):
        raise BadResponse("null completion", f"the message content is {text!r:.40}")
    size = len(text) + len(reasoning or "")
    if size > MAX_CHARS_PER_TOKEN * max_tokens:
        raise BadResponse("over max_tokens", f"{size} characters for max_tokens {max_tokens}")
    if not text.strip() and not thought:
        raise BadResponse("empty completion", f"{len(text)} whitespace characters")
    for name, value in usage.items():
        if value is not None and (type(value) is not int or value < 0):
            raise BadResponse("invalid usage", f"usage.{name} is {value!r:.40}")
    used = usage.get("completion_tokens")
    if used is not None and used > max_tokens:
        raise BadResponse("over max_tokens", f"usage.completion_tokens {used} > {max_tokens}")
    return {
        **response,
        "text": redact(text),
        **({"reasoning": redact(reasoning)} if thought else {}),
    }


def count_summary(counts: Counter[str]) -> str:
    """`3 invalid JSON, 2 empty completions, 1 HTTP 503`: most frequent first."""
    return ", ".join(
        f"{n} {kind}{'s' if n > 1 and kind.split()[-1] in COUNTABLE else ''}"
        for kind, n in counts.most_common()
    )


def _body_kind(content_type: str, body: str) -> str:
    if "html" in content_type or body.lstrip().startswith("<"):
        return "HTML page"
    if "event-stream" in content_type or body.lstrip().startswith(("data:", "event:")):
        return "SSE stream"
    return "invalid JSON"


def _excerpt(content_type: str, body: str) -> str:
    text = " ".join(body.split())
    return f"{content_type or 'no content type'}, {len(body)} characters: {text[:80]!r}"
