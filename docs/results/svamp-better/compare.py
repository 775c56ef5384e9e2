"""Paired comparisons of evaluations made by different recipes on the same test problems.

`cot-factory report` compares the configs of one recipe; a study that changes training settings
runs several recipes. This script reads their `predictions.jsonl` (each arm: NAME=EVAL_FOLDER)
and prints each arm's accuracy and every pair's exact McNemar test with Holm's correction, as
the report computes them (factory/comparisons.py), with `--json` for the figures.

    S=$COT_FACTORY_HOME/runs/svamp-better-9ba8443a14d2/students/smollm2-135m
    python docs/results/svamp-better/compare.py \
        mix=$S/mix-teachers-L3/seed-0/eval L3=$S/gpt-4o-cot-L3/seed-0/eval base=$S/base
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from factory.comparisons import Outcomes, compare_all
from factory.paths import PREDICTIONS


def arm(spec: str) -> tuple[str, Outcomes]:
    name, _, folder = spec.partition("=")
    if not folder:
        raise SystemExit(f"{spec!r}: write NAME=EVAL_FOLDER")
    rows = [json.loads(line) for line in (Path(folder) / PREDICTIONS).read_text().splitlines()]
    return name, Outcomes.pooled([rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("arms", nargs="+", help="NAME=EVAL_FOLDER, best first reads best")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    arms = dict(arm(spec) for spec in args.arms)
    order = list(arms)
    comparisons = compare_all(arms, order)
    width = max(len(name) for name in order) + 2
    print(f"{'arm':<{width}}{'correct':>9}{'total':>7}{'accuracy':>10}")
    for name in order:
        right, total = sum(arms[name].correct.values()), len(arms[name].correct)
        print(f"{name:<{width}}{right:>9}{total:>7}{100 * right / total:>9.1f}%")
    pairs = 2 * width + 4
    print(f"\n{'a vs b':<{pairs}}{'diff':>7}  {'95% CI':<16}{'a+/b+':>8}{'p':>9}{'Holm':>9}")
    for c in comparisons:
        pair = f"{c.a} vs {c.b}"
        low, high = (100 * x for x in c.ci95)
        interval = f"[{low:+.1f}, {high:+.1f}]"
        print(
            f"{pair:<{pairs}}{100 * c.difference:>+6.1f}  {interval:<16}"
            f"{c.a_better:>4}/{c.b_better:<3}{c.p:>9.2g}{c.p_holm:>9.2g}"
            + ("  *" if c.significant else "")
        )
    if args.json:
        figures = {"arms": order, "comparisons": [asdict(c) for c in comparisons]}
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
