"""Stage 4, build: verified traces -> a dataset folder laid out like a Hub dataset repo.

`{config}/train-0000i-of-0000n.parquet` for every config (TRL's conversational prompt-completion
rows plus metadata), `problems/{train,test}-*.parquet` with the raw problems (the test split is
what students are evaluated on), and a `README.md` card declaring every config. A reasoning
teacher's configs each have a long `-think` twin (its thinking, then its answer).

The traces come as a stream and go by once: each is written to the traces file, counted in its
config's `Tally` and, when kept, written to its config's shards; the kept traces of the configs a
mixture draws from wait on disk (`Spool`) until the mixtures are drawn. Memory holds counts and a
row group per config, never the rows. The folder is written next to its destination and renamed
into place, so it is always complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import shutil
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from factory.cards import render_dataset_card
from factory.prompts import student_messages
from factory.recipe import DROP_REASONS, Recipe, plan_configs, teacher_name
from factory.recipe.schema import OVERLONG
from factory.shards import (
    COT_FEATURES,
    PROBLEM_FEATURES,
    PROBLEMS_CONFIG,
    ROWS_PER_SHARD,
    ShardWriter,
)
from factory.sources import Problem
from factory.tallies import Tally, mean_of

REASONS = (*(r for r in DROP_REASONS if r != "duplicate"), OVERLONG, "duplicate")  # as verify


def build(
    recipe: Recipe,
    problems: dict[str, list[Problem]],
    traces: Iterable[dict],
    out: Path,
    traces_file: Path | None = None,
    rows_per_shard: int = ROWS_PER_SHARD,
) -> dict:
    """Write the dataset folder, and every trace to `traces_file` as it goes by; returns
    per-config statistics. A problem's traces in a config come together (generate's order)."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    dataset = Folder(recipe, tmp, rows_per_shard)
    with Spool(recipe) as spool, recorded(traces_file) as record:
        for trace in with_pass_rates(record(traces)):
            dataset.add(trace)
            spool.add(trace)
        for trace in mixture_traces(recipe, spool):
            dataset.add(trace)
    stats = dataset.close(problems)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return stats


@contextlib.contextmanager
def recorded(path: Path | None):
    """A pass-through over traces that writes each one to `path` as a JSON line: written next
    to it and moved into place once the block succeeds, so the file is whole or the old one."""
    if path is None:
        yield lambda traces: traces
        return
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:

        def record(traces: Iterable[dict]) -> Iterator[dict]:
            for trace in traces:
                f.write(json.dumps(trace, ensure_ascii=False) + "\n")
                yield trace

        yield record
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def with_pass_rates(traces: Iterable[dict]) -> Iterator[dict]:
    """Every trace with `pass_rate`: the share of its problem's attempts in its config that
    were kept (how hard the problem was for the teacher). A problem's traces in a config come
    together, so each problem is held alone."""
    for _, group in itertools.groupby(traces, key=lambda t: (t["config"], t["problem_id"])):
        attempts = list(group)
        rate = sum(t["drop_reason"] is None for t in attempts) / len(attempts)
        yield from ({**t, "pass_rate": rate} for t in attempts)


class Folder:
    """The dataset folder being written: each config's shards, counts and sample row."""

    def __init__(self, recipe: Recipe, folder: Path, rows_per_shard: int):
        self.recipe, self.folder, self.rows_per_shard = recipe, folder, rows_per_shard
        self.tallies: dict[str, Tally] = {}
        self.shards: dict[str, ShardWriter] = {}
        self.samples: dict[str, dict] = {}  # the first kept row of each config
        self.example_prompt: dict | None = None  # the first teacher prompt
        self.thinking: set[str] = set()  # the teachers with long traces

    def add(self, trace: dict) -> None:
        config = trace["config"]
        self.tallies.setdefault(config, Tally()).add(trace)
        if trace.get("thinking"):
            self.thinking.add(trace["teacher"])
        if self.example_prompt is None and trace["messages"]:
            self.example_prompt = {"config": config, "messages": trace["messages"]}
        if trace["drop_reason"] is None:
            row = _row(trace, self.recipe.source.task)
            self.samples.setdefault(config, row)
            if config not in self.shards:
                folder = self.folder / config
                self.shards[config] = ShardWriter(
                    folder, "train", COT_FEATURES, self.rows_per_shard
                )
            self.shards[config].add(row)

    def close(self, problems: dict[str, list[Problem]]) -> dict:
        """Finish the shards, write the problems and the card; returns the statistics."""
        for writer in self.shards.values():
            writer.close()
        for split, items in problems.items():
            folder = self.folder / PROBLEMS_CONFIG
            writer = ShardWriter(folder, split, PROBLEM_FEATURES, self.rows_per_shard)
            for problem in items:
                writer.add(problem.to_dict())
            writer.close()
        train = len(problems["train"])
        stats = config_stats(self.recipe, train, self.tallies, self.thinking)
        split_sizes = {k: len(v) for k, v in problems.items()}
        skipped = getattr(problems, "skipped", {})
        args = (split_sizes, self.samples, self.example_prompt, skipped)
        render_dataset_card(self.recipe, stats, *args).save(self.folder / "README.md")
        return stats


class Spool:
    """The kept traces of the configs mixtures draw from, on disk (a private temporary SQLite
    database, deleted when closed), read back in a mixture's order."""

    def __init__(self, recipe: Recipe):
        self.members = {m for plan in plan_configs(recipe) for m, _ in plan.members}
        self.counts: Counter[str] = Counter()
        self._db = sqlite3.connect("")
        self._db.execute("CREATE TABLE kept (config TEXT, seq INTEGER, rank BLOB, trace TEXT)")

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc) -> None:
        self._db.close()

    def add(self, trace: dict) -> None:
        config = trace["config"]
        if config in self.members and trace["drop_reason"] is None:
            rank = hashlib.sha256(f"{trace['problem_id']}/{trace['sample']}".encode()).digest()
            row = (config, self.counts[config], rank, json.dumps(trace, ensure_ascii=False))
            self._db.execute("INSERT INTO kept VALUES (?, ?, ?, ?)", row)
            self.counts[config] += 1

    def share(self, config: str, share: float) -> Iterator[dict]:
        """`share` of a config's kept traces: all of them in build order, or the first
        ceil(share x n) by a hash of problem and sample (stable across runs)."""
        self._db.execute("CREATE INDEX IF NOT EXISTS ranked ON kept (config, rank)")
        if share >= 1:
            query, args = "WHERE config = ? ORDER BY seq", (config,)
        else:
            query = "WHERE config = ? ORDER BY rank LIMIT ?"
            args = (config, math.ceil(share * self.counts[config]))
        for (text,) in self._db.execute(f"SELECT trace FROM kept {query}", args):
            yield json.loads(text)


def mixture_traces(recipe: Recipe, spool: Spool) -> Iterator[dict]:
    """The rows of every mixture config: the kept rows of its members (a share of each, drawn
    the same way every time), deduplicated by question and text, each naming its source."""
    for plan in plan_configs(recipe):
        seen: set[bytes] = set()
        for member, share in plan.members:
            for trace in spool.share(member, share):
                text = (trace["question"], " ".join(trace["completion"].split()))
                key = hashlib.blake2b(repr(text).encode(), digest_size=16).digest()
                if key not in seen:
                    seen.add(key)
                    yield {**trace, "config": plan.name, "source_config": member}


def config_stats(recipe: Recipe, train: int, tallies: dict[str, Tally], thinking) -> dict:
    """Per config, in card order (with the `-think` twins of the teachers in `thinking`): what
    the teacher produced, what was kept, why the rest was dropped, which evaluation sets its
    questions appear in; a mixture's rows per source config."""
    teachers = {teacher_name(t): t for t in recipe.teacher}
    stats = {}
    for plan in plan_configs(recipe, thinking):
        tally = tallies.get(plan.name) or Tally()
        stats[plan.name] = _stats(plan, tally, train)
        if plan.teacher in teachers and not plan.thinking:  # a long twin asks nothing of its own
            stats[plan.name]["usage"] = tally.usage.stats(teachers[plan.teacher])
        if plan.members:
            composition = {m: tally.composition[m] for m, _ in plan.members}
            stats[plan.name]["composition"] = composition
            stats[plan.name]["teacher_accuracy"] = None  # its rows were all verified already
    return stats


def _stats(plan, tally: Tally, train: int) -> dict:
    n, kept, dropped = tally.traces, tally.kept, tally.dropped
    stats = {
        "teacher": plan.teacher,
        "format": plan.format,
        "level": plan.level,
        "problems_answered": len(tally.bins),
        "problems_missing": train - len(tally.bins),
        "traces": n,
        "kept": kept,
        "pass_rate": round(kept / n, 4) if n else None,
        "solved_share": tally.solved_share(),
        "difficulty": tally.difficulty(),
        "dropped": {r: dropped[r] for r in (*REASONS, "contaminated") if dropped[r]},
        "teacher_accuracy": round(mean_of(tally.correct, n), 4) if n else None,
        "mean_steps": round(mean_of(tally.steps, kept), 2) if kept else None,
        "mean_tokens": round(mean_of(tally.tokens, kept), 1) if kept else None,
        "contamination": dict(sorted(tally.contamination.items())),
    }
    marks = {"thinking": True} if plan.thinking else {}
    found = tally.thinking.stats()
    return stats | marks | ({"reasoning": found} if found else {})


def _row(trace: dict, task: str) -> dict:
    return {
        "prompt": student_messages(trace["question"], task=task, choices=trace["choices"]),
        "completion": [{"role": "assistant", "content": trace["completion"]}],
        "id": trace["problem_id"],
        "sample": trace["sample"],
        "question": trace["question"],
        "choices": trace["choices"],
        "answer": trace["answer"],
        "predicted_answer": trace["predicted_answer"],
        "correct": trace["correct"],
        "teacher": trace["teacher"],
        "teacher_params": json.dumps(trace["teacher_params"], sort_keys=True),
        "format": trace["format"],
        "level": trace["level"],
        "num_steps": trace["num_steps"],
        "num_tokens": trace["num_tokens"],
        "finish_reason": trace["finish_reason"],
        "raw_output": trace["raw_output"],
        "reasoning": trace.get("reasoning"),
        "reasoning_source": trace.get("reasoning_source"),
        "num_reasoning_tokens": trace.get("num_reasoning_tokens"),
        "num_reasoning_steps": trace.get("num_reasoning_steps"),
        "pass_rate": trace["pass_rate"],
        "source_config": trace.get("source_config", trace["config"]),
        "contaminated_by": trace.get("contaminated_by", []),
        "replica": trace.get("replica"),
    }
