"""A scriptable OpenAI-compatible chat (and text completion) endpoint on loopback, for what a
real server cannot be told to do on demand: answer after a fixed delay (throughput benchmark),
fail the next requests (retry and fault tests), die mid-run (`kill`, or on its own after
`die_after` answers: replica failover), serve some model names only (`models`, a 404 for the
rest) or fail others always (`failing`, a 500), and count every request it received and every
answer it sent.

Each answer is `Step 1: ... The answer is N.` where N is the problem's first number, so runs
are deterministic; a text completion (`/v1/completions`, a prompt) is `First read ... The answer
is N.`, N the first number of the prompt's last line that has one, cut at `max_tokens` words.
Real model serving is tested against `transformers serve` instead.

As a reasoning model (`thinking=`), it works the sum of a `a + b - c =` problem out in several
paragraphs of thinking (a slip, its correction, a check), then answers with a short explanation
and the right total. The thinking comes as a reasoning parser serves it, in one of three shapes:
`"reasoning"` (vLLM since late 2025, OpenRouter) or `"reasoning_content"` (the DeepSeek API,
older vLLM) message fields, or `"inline"` `<think>...</think>` in the content (no parser); with
`usage.completion_tokens_details.reasoning_tokens` unless `reasoning_tokens=False`. Tokens are
words: an answer longer than `max_tokens` is cut there with finish_reason `length`, inside the
thinking (a field with null content, or an unclosed `<think>`) or after it.

Faults, one per request in arrival order:
- `"drop"`: the connection closes without an answer.
- an HTTP status (`"429"`, `"500"`, `"503"`, ...): a JSON error; `"401"` echoes the bearer key
  in its message, as careless servers do.
- 200 answers that are not answers: `"html"` (a proxy's page), `"sse"` (an event stream),
  `"badjson"` (a cut-off body), `"empty"`, `"whitespace"` and `"null"` content, `"huge"` (1 MB
  of text, no usage), `"overusage"` (usage says more tokens than `max_tokens`), `"echo"` (a
  completion that quotes the bearer key).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTML_PAGE = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1>nginx</body></html>"
CONTENT_FAULTS = {"empty": "", "whitespace": " \n\t \n", "null": None, "huge": "x" * 2**20}


@dataclass
class FakeOpenAI:
    delay: float = 0.0
    faults: list[str] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    writes: Callable[[dict], str] | None = None  # the answer text for a request body, if not ours
    thinking: str | None = None  # "reasoning", "reasoning_content" or "inline": a reasoning model
    reasoning_tokens: bool = True  # whether usage counts the thinking's tokens apart
    die_after: int | None = None  # good answers sent before the server dies (`kill`) on its own
    models: set[str] | None = None  # the model names it serves (a 404 for others); None: any
    failing: set[str] = field(default_factory=set)  # model names it answers with a 500, always
    answered: int = 0  # good completions sent in full (a fault is not one)
    in_flight_max: int = 0
    dead: bool = False
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connections: set = field(default_factory=set)

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, no delayed ACK

            def log_message(self, *args) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake._connections.add(self.connection)

            def finish(self) -> None:
                with fake._lock:
                    fake._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if fake.dead:  # accepted while dying
                    _hang_up(self)
                else:
                    fake._serve(self, body)

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default 5 refuses bursts of concurrent connects

            def handle_error(self, request, client_address) -> None:
                hung_up = isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError)
                if not (fake.dead or hung_up):  # a client may leave, a dead server's fail
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kill(self) -> None:
        """Die as a crashed server does: every open connection closes, the requests in flight
        get no answer, and new connections are refused."""
        with self._lock:
            self.dead, connections = True, list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed
                connection.shutdown(socket.SHUT_RDWR)
        self.stop()

    def _serve(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        with self._lock:
            self.requests.append(body)
            fault = self.faults.pop(0) if self.faults else None
            if body.get("model") in self.failing:
                fault = "500"
            elif self.models is not None and body.get("model") not in self.models:
                fault = "404"
            self._in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self._in_flight)
        try:
            time.sleep(self.delay)
            writes = self.writes
            if self.thinking:
                writes = partial(_reasoned, shape=self.thinking, counted=self.reasoning_tokens)
            self._send_answer(handler, body, fault, writes)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _send_answer(self, handler: BaseHTTPRequestHandler, body: dict, fault, writes) -> None:
        """The answer, unless the server died meanwhile; it dies after its `die_after`th."""
        with self._lock:  # no answer leaves after `kill`, and each one sent is counted
            if self.dead:
                return _hang_up(handler)
            _answer(handler, body, fault, writes)
            self.answered += fault is None
            self.dead = self.answered == self.die_after
        if self.dead:
            self.kill()


def _hang_up(handler: BaseHTTPRequestHandler) -> None:
    """The connection closes without an answer."""
    handler.close_connection = True
    with contextlib.suppress(OSError):  # already closed
        handler.connection.shutdown(socket.SHUT_RDWR)


def _answer(handler: BaseHTTPRequestHandler, body: dict, fault: str | None, writes=None) -> None:
    key = handler.headers.get("Authorization", "").removeprefix("Bearer ")
    if fault == "drop":
        _hang_up(handler)
    elif fault and fault.isdigit():
        message = f"Incorrect API key provided: {key}" if fault == "401" else f"injected {fault}"
        headers = {"Retry-After": "0"} if fault == "429" else {}
        _send(handler, int(fault), json.dumps({"error": {"message": message}}), headers=headers)
    elif fault == "html":
        _send(handler, 200, HTML_PAGE, "text/html; charset=utf-8")
    elif fault == "sse":
        chunk = {"object": "chat.completion.chunk", "choices": [{"delta": {"content": "Step"}}]}
        _send(handler, 200, f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n", "text/event-stream")
    elif fault == "badjson":
        _send(handler, 200, json.dumps(_completion(body, writes))[:40])
    else:
        _send(handler, 200, json.dumps(_faulty(_completion(body, writes), body, fault, key)))


def _faulty(completion: dict, body: dict, fault: str | None, key: str) -> dict:
    """A well-formed completion whose content or usage is wrong in the way `fault` says."""
    if fault is None or "message" not in completion["choices"][0]:  # a text completion: as is
        return completion
    message = completion["choices"][0]["message"]
    if fault in CONTENT_FAULTS:
        message["content"] = CONTENT_FAULTS[fault]
    if fault == "huge":
        del completion["usage"]
    if fault == "overusage":
        completion["usage"]["completion_tokens"] = body["max_tokens"] + 1
    if fault == "echo":
        message["content"] = f"Your key is {key}.\n{message['content']}"
    return completion


def _completion(body: dict, writes=None) -> dict:
    if "prompt" in body:
        return _text_completion(body)
    question = body["messages"][-1]["content"]
    numbers = re.findall(r"\d+", question.split("Problem:")[-1])
    answer = numbers[0] if numbers else "0"
    text = f"Step 1: read the problem.\nStep 2: compute.\nThe answer is {answer}."
    text = writes(body) if writes else text
    if isinstance(text, dict):  # a reasoning model's whole answer
        return _completion_of(body, question, **text)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": len(question.split()),
            "completion_tokens": len(text.split()),
            "total_tokens": len(question.split()) + len(text.split()),
        },
    }


def _text_completion(body: dict) -> dict:
    """`/v1/completions`: the same answer to the last number-bearing line of the prompt, cut at
    `max_tokens` words as `length`."""
    lines = [line for line in body["prompt"].splitlines() if re.search(r"\d", line)]
    numbers = re.findall(r"\d+", lines[-1] if lines else "")
    answer = numbers[0] if numbers else "0"
    words = f"First read the problem, then add. The answer is {answer}.".split()
    cut = len(words) > body["max_tokens"]
    text = " ".join(words[: body["max_tokens"]])
    return {
        "id": "cmpl-fake",
        "object": "text_completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "text": text, "finish_reason": "length" if cut else "stop"}],
        "usage": {
            "prompt_tokens": len(body["prompt"].split()),
            "completion_tokens": min(len(words), body["max_tokens"]),
            "total_tokens": len(body["prompt"].split()) + min(len(words), body["max_tokens"]),
        },
    }


def _send(
    handler: BaseHTTPRequestHandler,
    status: int,
    text: str,
    content_type: str = "application/json",
    headers: dict | None = None,
) -> None:
    data = text.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


# --- a reasoning model ------------------------------------------------------------------------

TERMS = re.compile(r"(-?\d+(?:\s*[-+]\s*\d+)+)\s*=")


def thinking_about(question: str) -> tuple[str, str, int]:
    """(the thinking, the answer with its explanation, the total) for a sum problem: paragraphs
    that add the terms one at a time, slip once and correct it, then check in reverse."""
    expression = TERMS.search(question.split("Problem:")[-1])[1]
    terms = [int(t.replace(" ", "")) for t in re.findall(r"[-+]?\s*\d+", expression)]
    total, running, steps = sum(terms), terms[0], []
    for term in terms[1:]:
        sign = "+" if term >= 0 else "-"
        steps.append(
            f"Now the next term: {running} {sign} {abs(term)}. Counting on from {running}, "
            f"that is {running + term}. So far so good."
        )
        running += term
    thinking = "\n\n".join(
        [
            f"Okay, let me read the problem carefully. I need the value of {expression}, and "
            "I should give one number at the end.",
            f"I'll take the terms from left to right. At first I get {total + 1}, but that "
            "cannot be right: I added one too many. Let me redo it one term at a time.",
            *steps,
            "Let me check by going through the terms again in reverse order. Starting from the "
            f"last term and working back, I reach {total} again, so both orders agree.",
            f"So the total is {total}. I'll write a short explanation and the answer line.",
        ]
    )
    answer = f"Adding the terms in order gives {total}.\nThe answer is {total}."
    return thinking, answer, total


def _reasoned(body: dict, shape: str, counted: bool) -> dict:
    thinking, answer, _ = thinking_about(body["messages"][-1]["content"])
    return {"thinking": thinking, "answer": answer, "shape": shape, "counted": counted}


def _completion_of(body: dict, question: str, thinking, answer, shape, counted) -> dict:
    """The chat completion of a reasoning model's thinking and answer in `shape`, cut at
    `max_tokens` words."""
    budget = body.get("max_tokens") or 10**9
    thought, said = _cut(thinking, budget), _cut(answer, budget - len(thinking.split()))
    finish = "length" if thought != thinking or said != answer else "stop"
    message = {"role": "assistant", "content": said or None}
    if shape == "inline":
        closing = "\n</think>\n\n" if thought == thinking else ""
        message["content"] = f"<think>\n{thought}{closing}{said}"
    else:
        message[shape] = thought
    completion = len(thought.split()) + len(said.split())
    usage = {"prompt_tokens": len(question.split()), "completion_tokens": completion}
    usage["total_tokens"] = usage["prompt_tokens"] + completion
    if counted:
        usage["completion_tokens_details"] = {"reasoning_tokens": len(thought.split())}
    choice = {"index": 0, "message": message, "finish_reason": finish}
    model = body["model"]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage,
    }


def _cut(text: str, words: int) -> str:
    """`text` up to its first `words` words (all of it when it has no more)."""
    pieces = re.findall(r"\S+\s*", text)
    return text if len(pieces) <= words else "".join(pieces[: max(words, 0)]).rstrip()
