"""A scriptable OpenAI-compatible chat endpoint on loopback, for what a real server cannot be
told to do on demand: answer after a fixed delay (throughput benchmark), fail the next requests
(retry and fault tests), and count every request it received.

Each answer is `Step 1: ... The answer is N.` where N is the problem's first number, so runs
are deterministic. Real model serving is tested against `transformers serve` instead.

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

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTML_PAGE = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1>nginx</body></html>"
CONTENT_FAULTS = {"empty": "", "whitespace": " \n\t \n", "null": None, "huge": "x" * 2**20}


@dataclass
class FakeOpenAI:
    delay: float = 0.0
    faults: list[str] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    writes: Callable[[dict], str] | None = None  # the answer text for a request body, if not ours
    in_flight_max: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, no delayed ACK

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake._serve(self, body)

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default 5 refuses bursts of concurrent connects

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

    def _serve(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        with self._lock:
            self.requests.append(body)
            fault = self.faults.pop(0) if self.faults else None
            self._in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self._in_flight)
        try:
            time.sleep(self.delay)
            _answer(handler, body, fault, self.writes)
        finally:
            with self._lock:
                self._in_flight -= 1


def _answer(handler: BaseHTTPRequestHandler, body: dict, fault: str | None, writes=None) -> None:
    key = handler.headers.get("Authorization", "").removeprefix("Bearer ")
    if fault == "drop":
        handler.close_connection = True
        handler.connection.shutdown(2)
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
    question = body["messages"][-1]["content"]
    numbers = re.findall(r"\d+", question.split("Problem:")[-1])
    answer = numbers[0] if numbers else "0"
    text = f"Step 1: read the problem.\nStep 2: compute.\nThe answer is {answer}."
    text = writes(body) if writes else text
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
