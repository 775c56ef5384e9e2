"""Throughput of the `openai` teacher, and what the generation cache saves.

Runs the real pipeline (`build_dataset`) on a reasoning-gym `chain_sum` recipe whose `openai`
teacher points at `tests/fake_openai.py`, an OpenAI-compatible server on loopback that answers
every request after a fixed delay. Three phases, interleaved in each repeat, each in a fresh home:

- cold, concurrency C: nothing cached, up to C requests in flight;
- cold, concurrency 1: the same requests one at a time;
- warm: phase 1's recipe rebuilt against its own cache; the server must receive nothing.

The warm build is the pipeline's fixed cost (source, verify, build, card), so `cold - warm` is
the teacher phase alone; the server's own span (first request in, last answer out) is shown too.

    .venv/bin/python bench/teacher_throughput.py [--delay 0.2] [--concurrency 16] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("TQDM_DISABLE", "1")  # one table on stdout, no progress bars
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from fake_openai import FakeOpenAI  # noqa: E402

from factory.recipe import load_recipe  # noqa: E402
from factory.run import build_dataset  # noqa: E402

LEVELS = [1, 2]
PHASES = ("cold_concurrent", "cold_sequential", "warm")


@dataclass
class TimedFakeOpenAI(FakeOpenAI):
    """FakeOpenAI that notes when the first request arrived and the last answer left."""

    first_in: float | None = None
    last_out: float | None = None

    def _serve(self, handler, body: dict) -> None:
        arrived = time.perf_counter()
        try:
            super()._serve(handler, body)
        finally:
            with self._lock:
                self.first_in = min(self.first_in or arrived, arrived)
                self.last_out = time.perf_counter()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.in_flight_max, self.first_in, self.last_out = 0, None, None

    def span(self) -> float:
        return self.last_out - self.first_in if self.requests else 0.0


@dataclass
class Measure:
    wall: float
    requests: int
    in_flight_max: int
    server_span: float


@dataclass
class Results:
    measures: dict[str, list[Measure]] = field(default_factory=lambda: {p: [] for p in PHASES})

    def median(self, phase: str, attr: str) -> float:
        return statistics.median(getattr(m, attr) for m in self.measures[phase])


def write_recipe(path: Path, base_url: str | list[str], concurrency: int, problems: int) -> Path:
    """A recipe: `problems` chain_sum problems x levels 1-2, one openai teacher at `base_url`
    (one endpoint, or a list of replicas)."""
    recipe = {
        "name": path.stem,
        "source": {"kind": "gym", "dataset": "chain_sum", "train": problems, "seed": 0},
        "teacher": {
            "backend": "openai",
            "name": "fake",
            "model": "fake-model",
            "base_url": base_url,
            "api_key_env": None,
            "concurrency": concurrency,
        },
        "cot": {"levels": LEVELS, "formats": ["cot"], "answer_only": False},
        "dataset": {"repo_id": "local/bench"},
    }
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def measure(server: TimedFakeOpenAI, recipe_path: Path, home: Path) -> Measure:
    """One build of the recipe into `home`, with what the server saw during it."""
    server.reset()
    start = time.perf_counter()
    build_dataset(load_recipe(recipe_path), home)
    wall = time.perf_counter() - start
    return Measure(wall, len(server.requests), server.in_flight_max, server.span())


def run_repeat(server, recipes: dict[str, Path], tmp: Path, index: int, n: int) -> dict:
    """The three phases once, each cold build in a fresh home; checks the request counts."""
    homes = {p: tmp / f"home-{index}-{p}" for p in ("cold_concurrent", "cold_sequential")}
    out = {
        "cold_concurrent": measure(server, recipes["concurrent"], homes["cold_concurrent"]),
        "cold_sequential": measure(server, recipes["sequential"], homes["cold_sequential"]),
        "warm": measure(server, recipes["concurrent"], homes["cold_concurrent"]),
    }
    for phase in ("cold_concurrent", "cold_sequential"):
        if out[phase].requests != n:
            raise SystemExit(f"{phase}: server received {out[phase].requests} requests, not {n}")
    if out["warm"].requests:
        raise SystemExit(f"warm rebuild asked the teacher {out['warm'].requests} times, not 0")
    return out


def benchmark(delay: float, concurrency: int, problems: int, repeats: int) -> dict:
    """Start the server, build once untimed (imports, lazy set-up), run the repeats, summarize."""
    server = TimedFakeOpenAI(delay=delay).start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-teacher-") as name:
            tmp = Path(name)
            warmup = write_recipe(tmp / "warmup.yaml", server.base_url, concurrency, problems)
            build_dataset(load_recipe(warmup), tmp / "home-warmup")  # imports, lazy setup
            recipes = {
                "concurrent": write_recipe(
                    tmp / "concurrent.yaml", server.base_url, concurrency, problems
                ),
                "sequential": write_recipe(tmp / "sequential.yaml", server.base_url, 1, problems),
            }
            results = Results()
            n = problems * len(LEVELS)
            for i in range(repeats):
                for phase, m in run_repeat(server, recipes, tmp, i, n).items():
                    results.measures[phase].append(m)
    finally:
        server.stop()
    return summarize(results, delay, concurrency, problems, repeats)


def summarize(
    results: Results, delay: float, concurrency: int, problems: int, repeats: int
) -> dict:
    """Medians per phase, teacher time as cold minus warm, and the ratios with their ideals."""
    n = problems * len(LEVELS)
    warm = results.median("warm", "wall")
    phases = {}
    for phase in PHASES:
        wall = results.median(phase, "wall")
        cold = phase != "warm"
        teacher = wall - warm if cold else None
        phases[phase] = {
            "wall_s": wall,
            "teacher_s": teacher,
            "server_span_s": results.median(phase, "server_span"),
            "requests": results.measures[phase][-1].requests,
            "in_flight_max": max(m.in_flight_max for m in results.measures[phase]),
            "requests_per_s": n / wall if cold else None,
            "teacher_requests_per_s": n / teacher if cold and teacher > 0 else None,
            "walls_s": [m.wall for m in results.measures[phase]],
        }
    conc, seq = phases["cold_concurrent"], phases["cold_sequential"]
    return {
        "requests": n,
        "problems": problems,
        "levels": LEVELS,
        "delay_s": delay,
        "concurrency": concurrency,
        "repeats": repeats,
        "phases": phases,
        "ratios": {
            "build_speedup": seq["wall_s"] / conc["wall_s"],
            "teacher_speedup": seq["teacher_s"] / conc["teacher_s"]
            if conc["teacher_s"] > 0
            else None,
            "server_span_speedup": seq["server_span_s"] / conc["server_span_s"],
            "ideal_speedup": min(concurrency, n),
            "ideal_teacher_s": {
                "concurrent": math.ceil(n / concurrency) * delay,
                "sequential": n * delay,
            },
            "cold_over_warm": conc["wall_s"] / warm,
        },
    }


def report(s: dict) -> str:
    """The summary as a compact table."""
    c, r = s["concurrency"], s["ratios"]
    names = {
        "cold_concurrent": f"cold, concurrency {c}",
        "cold_sequential": "cold, concurrency 1",
        "warm": "warm rebuild of row 1",
    }
    lines = [
        f"teacher throughput: {s['requests']} requests ({s['problems']} chain_sum problems"
        f" x levels {s['levels']}), server delay {s['delay_s']:.3f} s,"
        f" median of {s['repeats']} repeat(s)",
        f"{'phase':<22}{'wall s':>8}{'teacher s':>11}{'server s':>10}{'req/s':>8}"
        f"{'teacher req/s':>15}{'requests':>10}{'max in-flight':>15}",
    ]
    for phase, name in names.items():
        p = s["phases"][phase]
        lines.append(
            f"{name:<22}{p['wall_s']:>8.2f}{_num(p['teacher_s']):>11}"
            f"{p['server_span_s']:>10.2f}{_num(p['requests_per_s']):>8}"
            f"{_num(p['teacher_requests_per_s']):>15}{p['requests']:>10}"
            f"{p['in_flight_max']:>15}"
        )
    ideal = r["ideal_teacher_s"]
    lines += [
        f"throughput, concurrency {c} / 1: build {r['build_speedup']:.1f}x, teacher "
        f"{_ratio(r['teacher_speedup'])}, server span {r['server_span_speedup']:.1f}x"
        f" (ideal min({c}, {s['requests']}) = {r['ideal_speedup']}x)",
        f"ideal teacher phase: {ideal['concurrent']:.2f} s at concurrency {c},"
        f" {ideal['sequential']:.2f} s at 1",
        f"cold / warm build time: {r['cold_over_warm']:.1f}x (warm build: 0 requests, asserted)",
    ]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=0.2, help="server seconds per request")
    parser.add_argument("--concurrency", type=int, default=16, help="the recipe's concurrency")
    parser.add_argument("--problems", type=int, default=32, help="train problems (x2 levels)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats; medians")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    summary = benchmark(args.delay, args.concurrency, args.problems, args.repeats)
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
