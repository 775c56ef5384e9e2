"""The endpoints of an `openai` teacher: one replica per `base_url`, each an `openai` client with
its share of the teacher's `concurrency` (that many workers), all fed from one queue.

With one URL its client retries as it always has (`max_retries`, exponential backoff with jitter,
`Retry-After`) and a request's last error is final. With several, each client sends once and the
pool retries elsewhere: a replica that fails (connection refused or dropped, a timeout, 408, 409,
429, 5xx) takes a strike and sits out a backoff (`Retry-After` honoured) while the failed request
goes back to the queue for the others; an answer clears its strikes. Requests in flight when it
failed add no strikes of their own. With `tries = max_retries + 1`, a request gives up after
`tries` failures per replica, and when every replica has `tries` strikes the pool raises
`ReplicasDown`.

A 200 answer is checked (`check_response`) and a bad one asked again of the same replica, with
the same backoff; each answer names its replica (`replica`: the URL).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from factory.responses import BadResponse, check_response, parse_completion
from factory.secrets import redact

log = logging.getLogger(__name__)
RETRY_DELAY, MAX_RETRY_DELAY = 0.5, 8.0  # seconds, as the openai client backs off
MAX_RETRY_AFTER = 60.0  # seconds of a `Retry-After` a replica sits out at most
RETRYABLE = (408, 409, 429)  # and every 5xx: statuses that say the replica, not the request, failed


@dataclass(eq=False)
class Replica:
    url: str
    client: Any  # openai.AsyncOpenAI
    share: int  # its workers: requests in flight to it at most
    strikes: int = 0  # failures in a row
    failed_at: float = float("-inf")  # time.monotonic() of the last strike
    back_until: float = 0.0  # no request is sent before
    reason: str = ""  # of the last strike, e.g. `Connection refused`

    def up(self) -> bool:
        return time.monotonic() >= self.back_until


class ReplicasDown(Exception):
    """Every replica failed `tries` times in a row."""

    def __init__(self, replicas: list[Replica]):
        down = ", ".join(f"{r.url} ({r.reason}; {_tries(r.strikes)})" for r in replicas)
        super().__init__(redact(f"all {len(replicas)} replicas are down: {down}"))


def _tries(n: int) -> str:
    return f"{n} {'try' if n == 1 else 'tries'}"


def endpoint_key(spec) -> str | None:
    """The API key in the variable `spec.api_key_env` names (`not-needed` where it names none),
    or None where that variable is unset."""
    if not spec.api_key_env:
        return "not-needed"
    return os.environ.get(spec.api_key_env) or None


def replica_urls(spec) -> list[str]:
    """An `openai` teacher's `base_url` as a list."""
    return [spec.base_url] if isinstance(spec.base_url, str) else list(spec.base_url)


def make_replicas(spec, api_key: str) -> list[Replica]:
    """One client per URL of an `openai` teacher, with its share of `concurrency`; a lone URL
    keeps the client's own retries, replicas send once (the pool moves failures elsewhere)."""
    from openai import AsyncOpenAI

    urls = replica_urls(spec)
    n, retries = len(urls), spec.max_retries if len(urls) == 1 else 0
    return [
        Replica(
            url,
            AsyncOpenAI(base_url=url, api_key=api_key, max_retries=retries, timeout=spec.timeout),
            spec.concurrency // n + (i < spec.concurrency % n),
        )
        for i, url in enumerate(urls)
    ]


Ask = Callable[[Replica, Any], Any]  # (replica, request) -> awaitable response
Settle = Callable[[Replica, Any, Exception], None]  # a request's final error: record or raise


class ReplicaPool:
    """Answers requests through an `openai` teacher's replicas (`make_replicas`), each of which
    is down after `max_retries + 1` failures in a row; `answers` counts those that arrived."""

    def __init__(self, spec, api_key: str, ask: Ask, on_result, settle: Settle):
        self.replicas, self.tries = make_replicas(spec, api_key), spec.max_retries + 1
        self.answers = 0
        self.ask, self.on_result, self.settle = ask, on_result, settle
        self._queue: asyncio.Queue = asyncio.Queue()

    async def run(self, requests: list) -> None:
        """Every request answered or settled; raises what a worker raised (`ReplicasDown`, or
        the settling's own error). The clients are closed at the end."""
        for request in requests:
            self._queue.put_nowait((request, 0))
        workers = [
            asyncio.create_task(self._work(r)) for r in self.replicas for _ in range(r.share)
        ]
        joined = asyncio.create_task(self._queue.join())
        try:
            done, _ = await asyncio.wait([joined, *workers], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (joined, *workers):
                task.cancel()
            await asyncio.gather(joined, *workers, return_exceptions=True)
            await asyncio.gather(*(r.client.close() for r in self.replicas))
        for task in done - {joined}:
            task.result()  # a worker only ends by raising

    async def _work(self, replica: Replica) -> None:
        while True:
            await asyncio.sleep(max(0.0, replica.back_until - time.monotonic()))
            request, faults = await self._queue.get()
            try:
                if replica.up():
                    await self._try(replica, request, faults)
                else:  # it failed while this worker waited for the queue
                    self._queue.put_nowait((request, faults))
            finally:
                self._queue.task_done()

    async def _try(self, replica: Replica, request, faults: int) -> None:
        import openai

        started = time.monotonic()
        try:
            response = await self.ask(replica, request)
        except (openai.APIError, BadResponse) as err:
            if self._moves(replica, err, started, faults):
                self._queue.put_nowait((request, faults + 1))
            else:
                self.settle(replica, request, err)
            return
        replica.strikes = 0
        self.answers += 1
        self.on_result(request, response)

    def _moves(self, replica: Replica, err: Exception, started: float, faults: int) -> bool:
        """Whether a failed request goes back to the queue for another try: with replicas to
        move to, after a replica fault (a strike for it), while it has tries left."""
        if len(self.replicas) == 1 or not replica_fault(err):
            return False
        self._strike(replica, err, started)
        return faults + 1 < self.tries * len(self.replicas)

    def _strike(self, replica: Replica, err: Exception, started: float) -> None:
        """A strike and a backoff for `replica`, unless it already took one since the failed
        request was sent; `ReplicasDown` once every replica has `tries` strikes."""
        if started >= replica.failed_at:
            replica.strikes += 1
            replica.failed_at = time.monotonic()
            replica.back_until = replica.failed_at + back_off(replica.strikes, err)
            replica.reason = fault_reason(err)
        if all(r.strikes >= self.tries for r in self.replicas):
            raise ReplicasDown(self.replicas)


def replica_fault(err: Exception) -> bool:
    """Whether `err` says the replica failed (unreachable, dropped, slow, overloaded, 5xx)
    rather than the request (a bad answer, a 4xx)."""
    import openai

    if isinstance(err, openai.APIStatusError):
        return err.status_code in RETRYABLE or err.status_code >= 500
    return isinstance(err, openai.APIConnectionError)  # timeouts included


def fault_reason(err: Exception) -> str:
    import openai

    if isinstance(err, openai.APITimeoutError):
        return "timed out"
    if isinstance(err, openai.APIStatusError):
        return f"HTTP {err.status_code}"
    return str(err.__cause__ or err)


def back_off(strikes: int, err: Exception | None = None) -> float:
    """Seconds before the next try: exponential with jitter, or the server's `Retry-After`."""
    delay = min(MAX_RETRY_DELAY, RETRY_DELAY * 2 ** (strikes - 1)) * (1 - random.random() / 4)
    response = getattr(err, "response", None)
    try:
        return max(delay, min(MAX_RETRY_AFTER, float(response.headers["retry-after"])))
    except (AttributeError, KeyError, TypeError, ValueError):
        return delay


async def ask_checked(replica: Replica, params: dict, retries: int, bad: Counter) -> dict:
    """The first answer of `replica` that passes `check_response`, bad ones (counted in `bad`)
    asked again up to `retries` times with backoff."""
    for attempt in range(retries):
        try:
            return await _ask(replica, params, bad)
        except BadResponse as bad_response:
            delay = back_off(attempt + 1)
            log.debug("replica %s: %s; retrying in %.2fs", replica.url, bad_response, delay)
            await asyncio.sleep(delay)
    return await _ask(replica, params, bad)


async def _ask(replica: Replica, params: dict, bad: Counter) -> dict:
    """A chat completion, or a text completion for `params` with a `prompt`."""
    endpoint = replica.client.completions if "prompt" in params else replica.client.chat.completions
    raw = await endpoint.with_raw_response.create(**params)
    http = raw.http_response
    try:
        response = parse_completion(http.headers.get("content-type", ""), http.text)
        return {**check_response(response, params["max_tokens"]), "replica": redact(replica.url)}
    except BadResponse as bad_response:
        bad[bad_response.kind] += 1
        raise
