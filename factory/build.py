"""Stage 4, build: verified traces -> a dataset folder laid out like a Hub dataset repo.

`{config}/train-00000-of-00001.parquet` for every config (TRL's conversational prompt-completion
rows plus metadata), `problems/{train,test}-*.parquet` with the raw problems (the test split is
what students are evaluated on), and a `README.md` card declaring every config. A reasoning
teacher's configs each have a long `-think` twin (its thinking, then its answer).
The folder is written next to its destination and renamed into place, so it is always complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections import Counter
from pathlib import Path
from statistics import mean

from factory.cards import render_dataset_card
from factory.contamination import counts
from factory.prompts import student_messages
from factory.reasoning import thinking_stats
from factory.recipe import DROP_REASONS, Recipe, plan_configs, teacher_name
from factory.recipe.schema import OVERLONG
from factory.shards import (
    COT_FEATURES,
    PROBLEM_FEATURES,
    PROBLEMS_CONFIG,
    SHARD,
    write_parquet,
)
from factory.sources import Problem

REASONS = (*(r for r in DROP_REASONS if r != "duplicate"), OVERLONG, "duplicate")  # as verify


def build(
    recipe: Recipe, problems: dict[str, list[Problem]], traces: list[dict], out: Path
) -> dict:
    """Write the dataset folder; returns per-config statistics."""
    traces = with_pass_rates(traces)
    traces = traces + mixture_traces(recipe, traces)
    stats = config_stats(recipe, problems["train"], traces)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for config in stats:
        rows = [
            _row(t, recipe.source.task)
            for t in traces
            if t["config"] == config and t["drop_reason"] is None
        ]
        if rows:
            write_parquet(rows, tmp / config / SHARD.format(split="train"), COT_FEATURES)
    for split, items in problems.items():
        write_parquet(
            [p.to_dict() for p in items],
            tmp / PROBLEMS_CONFIG / SHARD.format(split=split),
            PROBLEM_FEATURES,
        )
    samples: dict[str, dict] = {}
    for trace in traces:
        if trace["drop_reason"] is None:
            samples.setdefault(trace["config"], _row(trace, recipe.source.task))
    prompted = next((t for t in traces if t["messages"]), None)
    example_prompt = prompted and {"config": prompted["config"], "messages": prompted["messages"]}
    split_sizes = {k: len(v) for k, v in problems.items()}
    skipped = getattr(problems, "skipped", {})
    card = render_dataset_card(recipe, stats, split_sizes, samples, example_prompt, skipped)
    card.save(tmp / "README.md")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return stats


def with_pass_rates(traces: list[dict]) -> list[dict]:
    """Every trace with `pass_rate`: the share of its problem's attempts in its config that
    were kept (how hard the problem was for the teacher)."""
    attempts, kept = Counter(), Counter()
    for t in traces:
        attempts[t["config"], t["problem_id"]] += 1
        kept[t["config"], t["problem_id"]] += t["drop_reason"] is None
    return [
        {
            **t,
            "pass_rate": kept[t["config"], t["problem_id"]]
            / attempts[t["config"], t["problem_id"]],
        }
        for t in traces
    ]


def difficulty(traces: list[dict]) -> dict[str, int]:
    """How many problems the teacher passed never, sometimes (by quarter) and always."""
    rates = {t["problem_id"]: t["pass_rate"] for t in traces}.values()
    bins = {"0%": 0, "1-25%": 0, "26-50%": 0, "51-75%": 0, "76-99%": 0, "100%": 0}
    for rate in rates:
        label = (
            "0%"
            if rate == 0
            else "100%"
            if rate == 1
            else list(bins)[1 + min(3, int(rate * 4 - 1e-9))]
        )
        bins[label] += 1
    return bins


def plans(recipe: Recipe, traces: list[dict]) -> list:
    """The recipe's configs, with the `-think` twins of teachers whose answers were found
    thinking (generate made long traces for them)."""
    return plan_configs(recipe, {t["teacher"] for t in traces if t.get("thinking")})


def mixture_traces(recipe: Recipe, traces: list[dict]) -> list[dict]:
    """The rows of every mixture config: the kept rows of its members (a share of each, drawn
    the same way every time), deduplicated by question and text, each naming its source."""
    mixed = []
    for plan in plan_configs(recipe):
        seen: set[tuple[str, str]] = set()
        for member, share in plan.members:
            rows = [t for t in traces if t["config"] == member and t["drop_reason"] is None]
            for trace in _share(rows, share):
                key = (trace["question"], " ".join(trace["completion"].split()))
                if key not in seen:
                    seen.add(key)
                    mixed.append({**trace, "config": plan.name, "source_config": member})
    return mixed


def _share(rows: list[dict], share: float) -> list[dict]:
    """`share` of `rows`, chosen by a hash of problem and sample: stable across runs."""
    if share >= 1:
        return rows
    ranked = sorted(
        rows, key=lambda t: hashlib.sha256(f"{t['problem_id']}/{t['sample']}".encode()).digest()
    )
    return ranked[: math.ceil(share * len(rows))]


def config_stats(recipe: Recipe, train: list[Problem], traces: list[dict]) -> dict[str, dict]:
    """Per config: what the teacher produced, what was kept, why the rest was dropped, which
    evaluation sets its questions appear in; a mixture's rows per source config."""
    stats, contaminated = {}, counts(traces)
    teachers = {teacher_name(t): t for t in recipe.teacher}
    for plan in plans(recipe, traces):
        rows = [t for t in traces if t["config"] == plan.name]
        kept = [t for t in rows if t["drop_reason"] is None]
        dropped = Counter(t["drop_reason"] for t in rows if t["drop_reason"])
        stats[plan.name] = {
            "teacher": plan.teacher,
            "format": plan.format,
            "level": plan.level,
            "problems_answered": len({t["problem_id"] for t in rows}),
            "problems_missing": len(train) - len({t["problem_id"] for t in rows}),
            "traces": len(rows),
            "kept": len(kept),
            "pass_rate": round(len(kept) / len(rows), 4) if rows else None,
            "solved_share": _solved_share(rows),
            "difficulty": difficulty(rows) if rows else {},
            "dropped": {r: dropped[r] for r in (*REASONS, "contaminated") if dropped[r]},
            "teacher_accuracy": round(mean(t["correct"] for t in rows), 4) if rows else None,
            "mean_steps": round(mean(t["num_steps"] for t in kept), 2) if kept else None,
            "mean_tokens": round(mean(t["num_tokens"] for t in kept), 1) if kept else None,
            "contamination": contaminated.get(plan.name, {}),
        }
        stats[plan.name] |= _thinking(plan, kept)
        if plan.teacher in teachers and not plan.thinking:  # a long twin asks nothing of its own
            stats[plan.name]["usage"] = usage(rows, teachers[plan.teacher])
        if plan.members:
            composition = Counter(t["source_config"] for t in kept)
            stats[plan.name]["composition"] = {m: composition[m] for m, _ in plan.members}
            stats[plan.name]["teacher_accuracy"] = None  # its rows were all verified already
    return stats


def _thinking(plan, kept: list[dict]) -> dict:
    """A long config's mark, and the thinking of the kept rows where they have any."""
    marks = {"thinking": True} if plan.thinking else {}
    found = thinking_stats(kept)
    return marks | ({"reasoning": found} if found else {})


def _solved_share(rows: list[dict]) -> float | None:
    """The share of answered problems with at least one kept trace."""
    problems = {t["problem_id"] for t in rows}
    solved = {t["problem_id"] for t in rows if t["drop_reason"] is None}
    return round(len(solved) / len(problems), 4) if problems else None


def usage(traces: list[dict], teacher) -> dict:
    """What asking for these traces took: requests, and the prompt and completion tokens the
    endpoint counted (`unknown`: traces it sent no usage for), priced when the recipe says how."""
    known = [t["usage"] for t in traces if t.get("usage")]
    tokens = {
        kind: sum(u.get(kind) or 0 for u in known) if known else None
        for kind in ("prompt_tokens", "completion_tokens")
    }
    price = getattr(teacher, "price", None)
    cost = None
    if price and known:
        cost = tokens["prompt_tokens"] * price.input + tokens["completion_tokens"] * price.output
        cost = round(cost / 1e6, 4)
    thought = [u["reasoning_tokens"] for u in known if "reasoning_tokens" in u]
    if thought:  # included in completion_tokens, as endpoints count (and charge) them
        tokens["reasoning_tokens"] = sum(thought)
    return {"requests": len(traces), **tokens, "unknown": len(traces) - len(known), "cost": cost}


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
