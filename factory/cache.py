"""A crash-safe cache of teacher completions, shared by every recipe under one home.

Keyed by (teacher fingerprint, messages, sample index): a re-run asks the teacher nothing it was
already asked. Each completion is its own committed SQLite transaction (WAL journal), so a process
killed mid-run keeps every completion it had received and none half-written.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    teacher TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL
)
"""


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

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        """The cached responses among `keys`."""
        found: dict[str, dict] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, response FROM completions WHERE key IN ({marks})"
            found.update((k, json.loads(r)) for k, r in self._db.execute(query, chunk))
        return found

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
