"""A crash-safe cache of teacher completions, shared by every recipe under one home, and asking
a teacher through it for what it lacks (`ask_missing`).

Keyed by (teacher fingerprint, messages, sample index): a re-run asks the teacher nothing it was
already asked. Each completion is its own committed SQLite transaction (WAL journal), so a process
killed mid-run keeps every completion it had received and none half-written. Requests are looked
up and asked a chunk at a time (`CHUNK`): the cache grows on disk, never in memory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from factory.responses import BadResponse, check_response, count_summary
from factory.teachers import Failure, Request

log = logging.getLogger(__name__)
CHUNK = 500  # requests looked up at a time
ASKED = 8192  # requests handed to a teacher at a time, at most (a chunk where it answers in order)
KEYS_PER_QUERY = 500  # well under SQLite's limit on bound parameters

SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    teacher TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class GenerateError(RuntimeError):
    """Requests that failed after every retry; what did arrive is cached. `counts` has how many
    failed of each class (`{"invalid JSON": 3, "HTTP 503": 1}`)."""

    def __init__(self, message: str, counts: dict[str, int] | None = None):
        super().__init__(message)
        self.counts = counts or {}


def request_key(fingerprint: dict[str, Any], messages: list[dict], sample: int) -> str:
    """The cache key of one request: a hash of everything that determines the teacher's answer."""
    payload = {"teacher": fingerprint, "messages": messages, "sample": sample}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class GenerationCache:
    """Completions by request key, persisted in one SQLite file."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)

    def __enter__(self) -> GenerationCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        """The cached responses among `keys` (callers ask a chunk at a time)."""
        return {k: json.loads(r) for k, r in self._select("key, response", keys)}

    def cached(self, keys: list[str]) -> set[str]:
        """Which of `keys` have a response, without reading the responses."""
        return {row[0] for row in self._select("key", keys)}

    def _select(self, columns: str, keys: list[str]):
        for start in range(0, len(keys), KEYS_PER_QUERY):
            chunk = keys[start : start + KEYS_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT {columns} FROM completions WHERE key IN ({marks})"
            yield from self._db.execute(query, chunk)

    def responses(self) -> dict[str, dict]:
        """Every cached response, by request key."""
        rows = self._db.execute("SELECT key, response FROM completions")
        return {key: json.loads(response) for key, response in rows}

    def put(self, key: str, teacher: str, request: dict, response: dict) -> None:
        """Store one completion, committed before returning."""
        self._db.execute(
            "INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?)",
            (key, teacher, json.dumps(request), json.dumps(response), time.time()),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        self._db.close()


def ask_missing(
    teacher, name: str, requests: Iterable[Request], cache: GenerationCache, in_order: bool
) -> tuple[Counter, list[Failure]]:
    """Ask the teacher for the requests the cache lacks, caching each answer as it arrives:
    `ASKED` at a time, or (`in_order`: a teacher that answers one by one, a program) in one
    pass over them all. Returns the counts of `distinct` prompts (within a lookup `CHUNK`) and
    `missing` ones, and the requests that failed after retries."""
    found: Counter = Counter()
    with tqdm(total=0, desc=f"teacher {name}", unit="req") as bar:

        def on_result(request: Request, response: dict) -> None:
            meta = {"messages": request.messages, "sample": request.sample}
            cache.put(request.key, name, meta, response)
            bar.update()

        missing = _missing(teacher, name, requests, cache, found, bar, CHUNK if in_order else ASKED)
        if in_order:
            failures = _complete(teacher, missing, on_result)
        else:
            failures = [f for chunk in missing for f in teacher.complete(chunk, on_result)]
    return found, failures


def _complete(teacher, chunks: Iterator[list[Request]], on_result) -> list[Failure]:
    """One pass of a teacher that answers in order over every chunk, if any is missing."""
    first = next(chunks, None)
    if first is None:
        return []
    return teacher.complete(
        itertools.chain(first, itertools.chain.from_iterable(chunks)), on_result
    )


def _missing(teacher, name, requests, cache, found: Counter, bar, size: int):
    """Batches of up to `size` requests the cache has no (valid) answer for, each prompt once:
    one asked in an earlier batch is cached by the time a later one is looked up."""
    fingerprint, batch = teacher.fingerprint(), {}
    for chunk in chunks(requests):
        distinct = list({r.key: r for r in chunk}.values())
        keys = [r.key for r in distinct]
        if fingerprint["backend"] == "openai":  # cached answers are checked again
            have = set(checked(name, cache.get_many(keys), fingerprint))
        else:
            have = cache.cached(keys)
        missing = [r for r in distinct if r.key not in have and r.key not in batch]
        found.update(distinct=len(have) + len(missing), missing=len(missing))
        batch |= {r.key: r for r in missing}
        bar.total += len(missing)
        bar.refresh()
        if len(batch) >= size:
            yield list(batch.values())
            batch = {}
    if batch:
        yield list(batch.values())


def chunks(items: Iterable, size: int = CHUNK) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def checked(name: str, cached: dict[str, dict], fingerprint: dict) -> dict[str, dict]:
    """The cached answers that pass today's checks: older versions kept empty or oversize ones."""
    if fingerprint["backend"] != "openai":
        return cached
    kept, stale = {}, Counter()
    for key, response in cached.items():
        try:
            kept[key] = check_response(response, fingerprint["max_tokens"])
        except BadResponse as bad:
            stale[bad.kind] += 1
    if stale:
        summary = count_summary(stale)
        log.info("teacher %s: %d cached answers asked again: %s", name, stale.total(), summary)
    return kept


def failed(name: str, failures: list[Failure], asked: int) -> GenerateError:
    """The error for requests that failed after retries, counting each class of failure."""
    counts = Counter(f.kind for f in failures)
    summary, first = count_summary(counts), failures[0]
    log.warning("teacher %s: %d requests failed after retries: %s", name, len(failures), summary)
    return GenerateError(
        f"teacher {name}: {len(failures)} of {asked} requests failed after retries: {summary} "
        f"(first: config {first.request.config}, problem {first.request.problem_id}: "
        f"{first.error}). The {asked - len(failures)} that succeeded are cached; re-run to resume.",
        dict(counts),
    )
