"""Teachers answer requests for chains of thought.

Three backends share one shape: `fingerprint()` (what determines an answer, for the cache) and
`complete(requests, on_result)`, which calls `on_result(request, response)` as each answer arrives
so the caller can persist it at once. A response is `{"text", "finish_reason", "usage"}`, plus
a reasoning model's thinking where it came apart from the text (`reasoning`, `reasoning_source`)
or where the prompt opened the thinking tag itself (`thinking_prefilled`); inline thinking stays
in `text` as received (factory/reasoning.py splits it).

- `openai`: any OpenAI-compatible chat endpoint, or several replicas of one model, asynchronous
  with bounded concurrency (factory/replicas.py). One endpoint's retries (exponential backoff
  with jitter, `Retry-After` honoured, on 408/409/429/5xx, timeouts and dropped connections) are
  the official `openai` client's own; replicas move a failed request to another. A 200 answer
  is checked before it is kept (`check_response`): an HTML page, an event stream, invalid JSON,
  empty or null content, more than `max_tokens` are retried with the same backoff, never cached.
  Error texts are redacted (factory/secrets.py).
- `transformers`: a local model in-process, batched generation with left padding.
- `replay`: rationales that already exist, from the paper's alpaca JSON files.
- `program`: rationales written from each reasoning-gym problem's own solution (factory/programs),
  exact and deterministic; cached like any answer, so a re-run computes nothing again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.recipe import GymSource, OpenAITeacher, ReplayTeacher, TransformersTeacher
from factory.recipe.schema import ProgramTeacher
from factory.replicas import (
    Replica,
    ReplicaPool,
    ReplicasDown,
    ask_checked,
    endpoint_key,
    replica_urls,
)
from factory.responses import BadResponse, count_summary
from factory.secrets import redact, watch
from factory.sources import alpaca_question, read_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    key: str
    config: str  # the dataset config, e.g. `gpt-4o-cot-L3`
    shape: str  # its format and level, e.g. `cot-L3`
    problem_id: str
    question: str
    sample: int
    messages: list[dict] = field(hash=False)


OnResult = Callable[[Request, dict], None]


class TeacherError(RuntimeError):
    """A teacher that cannot answer at all (bad key, unknown model, unreachable endpoint)."""


@dataclass(frozen=True)
class Failure:
    """A request that failed after every retry: its class (`invalid JSON`, `HTTP 503`) and error."""

    request: Request
    kind: str
    error: str


def sampling_params(spec: OpenAITeacher | TransformersTeacher) -> dict[str, Any]:
    return {k: getattr(spec, k) for k in ("temperature", "top_p", "max_tokens", "seed")}


def request_extras(spec: OpenAITeacher) -> dict[str, Any]:
    """What a reasoning model is also sent (`reasoning_effort`, `extra_body`), where the recipe
    sets it: part of the fingerprint, so other settings are other cache entries."""
    extras = {"reasoning_effort": spec.reasoning_effort, "extra_body": spec.extra_body}
    return {k: v for k, v in extras.items() if v}


def sample_seed(seed: int | None, sample: int) -> int | None:
    """Each sample of one problem gets its own seed, so samples differ yet reproduce."""
    return None if seed is None else seed + sample


class OpenAIChatTeacher:
    def __init__(self, spec: OpenAITeacher):
        self.spec = spec
        self.bad_responses: Counter[str] = Counter()  # every bad 200 answer, retried or not
        watch(spec.api_key_env)

    def fingerprint(self) -> dict[str, Any]:
        """Model and parameters, not the URLs: replicas of one model share their answers."""
        spec = self.spec
        return {
            "backend": "openai",
            "model": spec.model,
            **sampling_params(spec),
            **request_extras(spec),
        }

    def complete(self, requests: list[Request], on_result: OnResult) -> list[Failure]:
        """Answer every request; returns the requests that failed after retries."""
        return asyncio.run(self._complete_all(requests, on_result))

    def _api_key(self) -> str:
        if (api_key := endpoint_key(self.spec)) is None:
            name = self.spec.api_key_env
            raise TeacherError(f"teacher {self.spec.model}: environment variable {name} is not set")
        return api_key

    async def _complete_all(self, requests: list[Request], on_result: OnResult):
        spec, failures = self.spec, []

        def settle(replica: Replica, request: Request, err: Exception) -> None:
            failures.append(self._failure(replica.url, request, err))

        pool = ReplicaPool(spec, self._api_key(), self._ask, on_result, settle)
        try:
            await pool.run(requests)
        except ReplicasDown as down:
            message = f"teacher {spec.model}: {down}; the {pool.answers} answers that arrived"
            raise TeacherError(redact(f"{message} are cached, re-run to resume")) from None
        if self.bad_responses:
            summary = count_summary(self.bad_responses)
            log.warning("teacher %s: bad answers, none cached: %s", spec.model, summary)
        return failures

    async def _ask(self, replica: Replica, request: Request) -> dict:
        spec = self.spec
        params = {
            "model": spec.model,
            "messages": request.messages,
            "temperature": spec.temperature,
            "top_p": spec.top_p,
            "max_tokens": spec.max_tokens,
            "seed": sample_seed(spec.seed, request.sample),
            **request_extras(spec),
        }
        return await ask_checked(replica, params, spec.max_retries, self.bad_responses)

    def _failure(self, url: str, request: Request, err: Exception) -> Failure:
        """The class of a request's last error; raises TeacherError where no request can work."""
        import openai

        model, alone = self.spec.model, len(replica_urls(self.spec)) == 1
        if isinstance(err, openai.AuthenticationError | openai.PermissionDeniedError):
            raise TeacherError(redact(f"{url} refused the API key: {err}")) from None
        if isinstance(err, openai.NotFoundError):
            raise TeacherError(redact(f"{url}: model {model!r}: {err}")) from None
        if type(err) is openai.APIConnectionError and alone:  # a timeout is counted
            reason, tries = str(err.__cause__ or err), self.spec.max_retries + 1
            message = f"teacher {model}: cannot reach {url} ({reason}; {tries} tries)"
            raise TeacherError(redact(message)) from None
        if isinstance(err, BadResponse):
            return Failure(request, err.kind, str(err))
        kind = "timeout" if isinstance(err, openai.APITimeoutError) else type(err).__name__
        if isinstance(err, openai.APIStatusError):
            kind = f"HTTP {err.status_code}"
        return Failure(request, kind, redact(f"{type(err).__name__}: {err}"))


class TransformersTeacherModel:
    def __init__(self, spec: TransformersTeacher, home: Path):
        self.spec, self.home = spec, home

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": "transformers", "model": self.spec.model, **sampling_params(self.spec)}

    def complete(self, requests: list[Request], on_result: OnResult) -> list[Failure]:
        from factory.inference import generate_batch, load_for_generation

        model, tokenizer = load_for_generation(self.spec.model, self.home)
        spec = self.spec
        # Similar lengths batch together: less padding, same results.
        ordered = sorted(requests, key=lambda r: len(str(r.messages)))
        for start in range(0, len(ordered), spec.batch_size):
            batch = ordered[start : start + spec.batch_size]
            outputs = generate_batch(
                model,
                tokenizer,
                [r.messages for r in batch],
                max_new_tokens=spec.max_tokens,
                temperature=spec.temperature,
                top_p=spec.top_p,
                seed=sample_seed(spec.seed, batch[0].sample),
            )
            for request, response in zip(batch, outputs, strict=True):
                on_result(request, self._prefilled(tokenizer, request, response))
        return []

    def _prefilled(self, tokenizer, request: Request, response: dict) -> dict:
        """The response, marked when the chat template's generation prompt opened the thinking
        tag itself (DeepSeek-R1-Distill, Qwen3.5): the text then starts inside the thinking."""
        prompt = tokenizer.apply_chat_template(
            request.messages, tokenize=False, add_generation_prompt=True
        )
        if prompt.rstrip().endswith(self.spec.reasoning_tags[0]):
            return {**response, "thinking_prefilled": True}
        return response


class ReplayTeacherFiles:
    """Rationales from files: one alpaca JSON per config, matched to problems by question."""

    def __init__(self, spec: ReplayTeacher):
        self.spec = spec
        self._answers = {config: _index_alpaca(Path(path)) for config, path in spec.files.items()}

    def fingerprint(self) -> dict[str, Any]:
        digests = {c: _file_digest(Path(p)) for c, p in sorted(self.spec.files.items())}
        return {"backend": "replay", "files": digests}

    def complete(self, requests: list[Request], on_result: OnResult) -> list[Failure]:
        for request in requests:
            output = self._answers[request.shape].get(normalize_question(request.question))
            if output is not None:
                on_result(request, {"text": output, "finish_reason": "stop", "usage": {}})
        return []


class ProgramTeacherWriter:
    """Rationales a program writes from each problem's own reasoning-gym entry. The entries are
    made again from the recipe's gym source as factory/sources.py makes the train split (same
    dataset, options, size and seed) and matched to the problems by question."""

    def __init__(self, spec: ProgramTeacher, source: GymSource):
        self.spec, self.source = spec, source

    def fingerprint(self) -> dict[str, Any]:
        from factory.programs import VERSION

        return {"backend": "program", "version": VERSION, "task": self.source.dataset}

    def complete(self, requests: list[Request], on_result: OnResult) -> list[Failure]:
        from factory.programs import ProgramError, solve, write

        entries, unsolved = self._entries(), Counter()
        for request in requests:
            entry = self._entry(entries, request)
            try:
                solution = solve(self.source.dataset, entry)
            except ProgramError as err:
                unsolved[str(err)] += 1  # no rationale: the card counts the problem as missing
                continue
            fmt, level = request.shape.rsplit("-L", 1)
            text = write(solution, fmt, int(level))
            on_result(request, {"text": text, "finish_reason": "stop", "usage": {}})
        if unsolved:
            first = next(iter(unsolved))
            log.warning("program teacher: %d rationales not written (%s)", unsolved.total(), first)
        return []

    def _entries(self) -> dict[str, dict]:
        from factory.programs import train_entries

        return {normalize_question(e["question"]): e for e in train_entries(self.source)}

    def _entry(self, entries: dict[str, dict], request: Request) -> dict:
        entry = entries.get(normalize_question(request.question))
        if entry is None:
            raise TeacherError(
                f"program teacher {self.spec.name}: problem {request.problem_id} is not among the "
                f"{len(entries)} {self.source.dataset} entries its gym source makes "
                f"(seed {self.source.seed}); its question: {request.question[:80]!r}"
            )
        return entry


def normalize_question(text: str) -> str:
    return " ".join(text.split())


def _index_alpaca(path: Path) -> dict[str, str]:
    index = {}
    for i, row in enumerate(read_table(path), 1):
        question = alpaca_question(row, f"{path} row {i}")
        index[normalize_question(question)] = row["output"]
    return index


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_teacher(spec, home: Path, source=None):
    """The teacher object for a recipe's teacher section (a program teacher reads the source)."""
    if isinstance(spec, ProgramTeacher):
        return ProgramTeacherWriter(spec, source)
    if isinstance(spec, OpenAITeacher):
        return OpenAIChatTeacher(spec)
    if isinstance(spec, TransformersTeacher):
        return TransformersTeacherModel(spec, home)
    return ReplayTeacherFiles(spec)
