"""Throughput of an `openai` teacher with two replicas against one, at the same concurrency per
server.

Runs the real pipeline (`build_dataset`) on a reasoning-gym `chain_sum` recipe whose teacher
points at `tests/fake_openai.py` servers on loopback that answer each request after a fixed
delay. Each repeat builds, each cold build in a fresh home:

- two replicas: `base_url: [server 1, server 2]`, concurrency 2C (C per server);
- one server: `base_url: server 1`, concurrency C;
- warm: the two-replica recipe rebuilt against its own cache (the server must receive nothing).

The warm build is the pipeline's fixed cost, so `cold - warm` is the teacher phase alone. The
ratio of the two teacher phases' throughput is what the second replica buys; the ideal is 2x.

    .venv/bin/python bench/teacher_replicas.py [--delay 0.2] [--per-server 8] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

from teacher_throughput import (  # sets up sys.path and the environment
    LEVELS,
    TimedFakeOpenAI,
    write_recipe,
)

from factory.recipe import load_recipe
from factory.run import build_dataset

SETTINGS = ("two", "one", "warm")


def measure(servers: list[TimedFakeOpenAI], recipe: Path, home: Path) -> dict:
    """One build, with what each server saw during it."""
    for server in servers:
        server.reset()
    start = time.perf_counter()
    build_dataset(load_recipe(recipe), home)
    wall = time.perf_counter() - start
    seen = [s for s in servers if s.requests]
    span = max((s.last_out for s in seen), default=0) - min((s.first_in for s in seen), default=0)
    return {
        "wall_s": wall,
        "server_span_s": span,
        "requests": [len(s.requests) for s in servers],
        "in_flight_max": [s.in_flight_max for s in servers],
    }


def run_repeat(servers, recipes: dict[str, Path], tmp: Path, index: int, n: int) -> dict:
    """The three builds once (the two cold ones in alternating order); checks request counts."""
    homes = {name: tmp / f"home-{index}-{name}" for name in ("two", "one")}
    order = ("two", "one") if index % 2 == 0 else ("one", "two")
    out = {name: measure(servers, recipes[name], homes[name]) for name in order}
    out["warm"] = measure(servers, recipes["two"], homes["two"])
    for name in ("two", "one"):
        if sum(out[name]["requests"]) != n:
            raise SystemExit(f"{name}: servers received {out[name]['requests']}, not {n} in all")
    if out["one"]["requests"][1] or not all(out["two"]["requests"]):
        raise SystemExit(
            f"requests went astray: {out['one']['requests']}, {out['two']['requests']}"
        )
    if sum(out["warm"]["requests"]):
        raise SystemExit(f"warm rebuild asked the servers {out['warm']['requests']} times, not 0")
    return out


def benchmark(delay: float, per_server: int, problems: int, repeats: int) -> dict:
    """Start two servers, build once untimed (imports, lazy set-up), run the repeats."""
    servers = [TimedFakeOpenAI(delay=delay).start() for _ in range(2)]
    urls = [s.base_url for s in servers]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-replicas-") as name:
            tmp = Path(name)
            warmup = write_recipe(tmp / "warmup.yaml", urls, 2 * per_server, problems)
            build_dataset(load_recipe(warmup), tmp / "home-warmup")
            recipes = {
                "two": write_recipe(tmp / "two.yaml", urls, 2 * per_server, problems),
                "one": write_recipe(tmp / "one.yaml", urls[0], per_server, problems),
            }
            n = problems * len(LEVELS)
            runs = [run_repeat(servers, recipes, tmp, i, n) for i in range(repeats)]
    finally:
        for server in servers:
            server.stop()
    return summarize(runs, delay, per_server, problems)


def summarize(runs: list[dict], delay: float, per_server: int, problems: int) -> dict:
    """Medians per setting, teacher time as cold minus warm, and the ratios."""
    n = problems * len(LEVELS)
    median = {
        s: {k: statistics.median(r[s][k] for r in runs) for k in ("wall_s", "server_span_s")}
        for s in SETTINGS
    }
    warm = median["warm"]["wall_s"]
    settings = {name: _setting(runs, name, median[name], warm, n) for name in ("two", "one")}
    two, one = settings["two"], settings["one"]
    return {
        "requests": n,
        "problems": problems,
        "delay_s": delay,
        "per_server": per_server,
        "repeats": len(runs),
        "warm_s": warm,
        "settings": settings,
        "ratios": {
            "teacher": one["teacher_s"] / two["teacher_s"] if two["teacher_s"] > 0 else None,
            "build": one["wall_s"] / two["wall_s"],
            "server_span": one["server_span_s"] / two["server_span_s"],
            "ideal": 2.0,
        },
    }


def _setting(runs: list[dict], name: str, median: dict, warm: float, n: int) -> dict:
    teacher = median["wall_s"] - warm
    return {
        **median,
        "teacher_s": teacher,
        "teacher_requests_per_s": n / teacher if teacher > 0 else None,
        "requests": runs[-1][name]["requests"],
        "in_flight_max": [max(r[name]["in_flight_max"][i] for r in runs) for i in (0, 1)],
    }


def report(s: dict) -> str:
    c, r = s["per_server"], s["ratios"]
    names = {"two": f"2 replicas, concurrency {2 * c}", "one": f"1 server, concurrency {c}"}
    lines = [
        f"teacher replicas: {s['requests']} requests ({s['problems']} chain_sum problems x levels"
        f" {LEVELS}), server delay {s['delay_s']:.3f} s, median of {s['repeats']} repeat(s)",
        f"{'setting':<29}{'wall s':>8}{'teacher s':>11}{'server s':>10}{'teacher req/s':>15}"
        f"{'requests':>12}{'max in-flight':>15}",
    ]
    for name, label in names.items():
        p = s["settings"][name]
        lines.append(
            f"{label:<29}{p['wall_s']:>8.2f}{p['teacher_s']:>11.2f}{p['server_span_s']:>10.2f}"
            f"{p['teacher_requests_per_s'] or 0:>15.1f}{'+'.join(map(str, p['requests'])):>12}"
            f"{'+'.join(map(str, p['in_flight_max'])):>15}"
        )
    teacher = "n/a" if r["teacher"] is None else f"{r['teacher']:.2f}x"
    lines += [
        f"throughput, 2 replicas / 1: teacher {teacher}, build {r['build']:.2f}x, server span"
        f" {r['server_span']:.2f}x (ideal 2x)",
        f"ideal teacher phase: {math.ceil(s['requests'] / (2 * c)) * s['delay_s']:.2f} s with 2"
        f" replicas, {math.ceil(s['requests'] / c) * s['delay_s']:.2f} s with 1",
        f"warm rebuild (fixed cost, 0 requests, asserted): {s['warm_s']:.2f} s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=0.2, help="server seconds per request")
    parser.add_argument("--per-server", type=int, default=8, help="concurrency per server")
    parser.add_argument("--problems", type=int, default=64, help="train problems (x2 levels)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats; medians")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    summary = benchmark(args.delay, args.per_server, args.problems, args.repeats)
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
