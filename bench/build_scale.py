"""A build at scale: time, rows/s and peak memory of `build_dataset` at two sizes, side by side.

Builds a reasoning-gym `chain_sum` recipe (3-4 terms of 2 digits) at one level (`cot-L3`) taught by
the `program` teacher: exact, in-process and instant, so what is measured is the pipeline (source,
requests, the SQLite cache, verification, decontamination, parquet, the card), not a model or
an HTTP stack. `--teacher openai` asks tests/fake_openai.py instead (on loopback, no delay, every
sum right) through the `openai` client, 16 requests in flight: the teacher client's share. Each
build runs in its own process, so its peak RSS is its own:

- cold: a fresh home, nothing cached: every rationale is written and cached;
- warm: the same build again, every answer from the cache (what a resumed build does).

Sizes alternate (small cold, large cold, small warm, large warm) in each repeat. A SIGALRM
sampler notes, every 5 ms, which part of the package the build is in (the innermost `factory`
frame), so each stage's share of the time is measured in the build itself.

    .venv/bin/python bench/build_scale.py [--small 10000] [--large 100000] [--repeats 1]
    .venv/bin/python bench/build_scale.py --teacher openai --small 2000 --large 20000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MB, LIMIT_RATIO = 2048, 11.0  # peak RSS of the large build; large / small build time
STAGES = {  # the module a sample is in -> the stage it counts for, in pipeline order
    "sources": "source",
    "tables": "source",
    "teachers": "teacher",
    "programs": "teacher",
    "replicas": "teacher",
    "responses": "teacher",
    "secrets": "teacher",
    "cache": "cache",
    "generate": "requests + traces",
    "prompts": "requests + traces",
    "reasoning": "requests + traces",
    "verify": "verify",
    "answers": "verify",
    "contamination": "decontaminate",
    "build": "rows + stats",
    "tallies": "rows + stats",
    "shards": "parquet",
    "cards": "card",
    "model_cards": "card",
}


def recipe(folder: Path, problems: int, teacher: dict) -> Path:
    spec = {
        "name": f"scale-{problems}",
        "source": {
            "kind": "gym",
            "dataset": "chain_sum",
            "train": problems,
            "test": 100,
            "seed": 0,
            "options": {"min_terms": 3, "max_terms": 4, "min_digits": 2, "max_digits": 2},
        },
        "teacher": teacher,
        "cot": {"levels": [3], "formats": ["cot"], "samples": 1, "answer_only": False},
        "dataset": {"repo_id": f"local/scale-{problems}"},
    }
    path = folder / f"scale-{problems}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# --- one build, in its own process ------------------------------------------------------------


class Sampler:
    """Counts, every `interval` seconds of wall time, the stage the build is in: a SIGALRM
    handler runs in the main thread between bytecodes and looks at its frame (a C call, such as
    a SQLite query or a parquet write, counts for the code that made it, once it returns)."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.counts = interval, Counter()

    def __enter__(self) -> Sampler:
        signal.signal(signal.SIGALRM, lambda _, frame: self.counts.update([stage_of(frame)]))
        signal.setitimer(signal.ITIMER_REAL, self.interval, self.interval)
        return self

    def __exit__(self, *exc) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    def shares(self) -> dict[str, float]:
        total = self.counts.total() or 1
        return {stage: n / total for stage, n in self.counts.most_common()}


def stage_of(frame) -> str:
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if "factory" in path.parts:
            module = path.parent.name if path.parent.name != "factory" else path.stem
            return STAGES.get(module, "other")
        frame = frame.f_back
    return "other"


def child(path: Path, home: Path) -> None:
    """Build `path` into `home` and print what it took as JSON."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.path.insert(0, str(ROOT))
    start = time.perf_counter()
    from factory.recipe import load_recipe
    from factory.run import build_dataset

    with Sampler() as sampler:
        done = build_dataset(load_recipe(path), home)
    seconds = time.perf_counter() - start
    rows = sum(s["kept"] for s in done.manifest.configs.values())
    shards = len(list((done.run.dataset / "cot-L3").glob("train-*.parquet")))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    measured = {"seconds": seconds, "rows": rows, "shards": shards, "peak_mb": peak}
    print(json.dumps(measured | {"stages": sampler.shares()}))


def measure(path: Path, home: Path) -> dict:
    command = [sys.executable, __file__, "--child", str(path), str(home)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- side by side -----------------------------------------------------------------------------


def run(sizes: list[int], repeats: int, folder: Path, teacher: dict) -> dict:
    results: dict[tuple[int, str], list[dict]] = {}
    for repeat in range(repeats):
        homes = {n: folder / f"home-{n}-{repeat}" for n in sizes}
        for phase in ("cold", "warm"):
            for n in sizes:
                measured = measure(recipe(folder, n, teacher), homes[n])
                results.setdefault((n, phase), []).append(measured)
                print(f"  {phase} {n}: {measured['seconds']:.1f} s", file=sys.stderr)
    return {key: median_run(runs) for key, runs in results.items()}


def median_run(runs: list[dict]) -> dict:
    runs = sorted(runs, key=lambda r: r["seconds"])
    return {**runs[len(runs) // 2], "peak_mb": max(r["peak_mb"] for r in runs)}


def table(results: dict) -> str:
    found = {s for r in results.values() for s in r["stages"]}
    stages = [s for s in (*dict.fromkeys(STAGES.values()), "other") if s in found]
    head = ["problems", "build", "seconds", "rows/s", "peak RSS MB", "shards", *stages]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (n, phase), r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        shares = [f"{100 * r['stages'].get(s, 0):.0f}%" for s in stages]
        row = [n, phase, f"{r['seconds']:.1f}", f"{r['rows'] / r['seconds']:.0f}"]
        lines.append(
            "| " + " | ".join(map(str, [*row, f"{r['peak_mb']:.0f}", r["shards"], *shares])) + " |"
        )
    return "\n".join(lines)


def verdict(results: dict, small: int, large: int) -> list[str]:
    failures = []
    for phase in ("cold", "warm"):
        ratio = results[large, phase]["seconds"] / results[small, phase]["seconds"]
        print(
            f"{phase}: {large} / {small} problems took {ratio:.2f}x the time "
            f"({large / small:.0f}x the problems)"
        )
        if ratio > LIMIT_RATIO:
            failures.append(f"{phase} time ratio {ratio:.2f} > {LIMIT_RATIO}")
        peak = results[large, phase]["peak_mb"]
        if peak >= LIMIT_MB:
            failures.append(f"{phase} peak RSS {peak:.0f} MB >= {LIMIT_MB} MB")
    return failures


@contextlib.contextmanager
def teacher_of(backend: str):
    """The recipe's teacher: the program, or the `openai` client asking tests/fake_openai.py."""
    if backend == "program":
        yield {"backend": "program", "name": "program"}
        return
    sys.path[:0] = [str(ROOT / "tests")]
    from fake_openai import FakeOpenAI
    from scale_recipes import right_sum

    server = FakeOpenAI(writes=right_sum).start()
    teacher = {"backend": "openai", "model": "fake/teacher", "base_url": server.base_url}
    try:
        yield teacher | {"api_key_env": None, "concurrency": 16, "name": "teacher"}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--teacher", choices=("program", "openai"), default="program")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    with teacher_of(args.teacher) as teacher, tempfile.TemporaryDirectory() as tmp:
        results = run([args.small, args.large], args.repeats, Path(tmp), teacher)
    print(table(results))
    failures = verdict(results, args.small, args.large)
    if args.json:
        args.json.write_text(json.dumps({f"{n}-{p}": r for (n, p), r in results.items()}, indent=2))
    if failures:
        sys.exit("FAILED: " + "; ".join(failures))


if __name__ == "__main__":
    main()
