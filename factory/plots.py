"""The report's figures (matplotlib, written as PNG). Each function returns the series it drew,
label -> [(x, accuracy)], so callers and tests can check what the picture shows."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    return plt, fig, ax


def _errors(results) -> list[list[float]]:
    return [
        [100 * (r.accuracy - r.ci95[0]) for r in results],
        [100 * (r.ci95[1] - r.accuracy) for r in results],
    ]


def accuracy_by_level(results, base: float | None, path: Path, student: str) -> dict:
    """Accuracy against granularity level, a line per teacher and format (the paper's figure),
    with 95% interval bars; the base model, answer-only and reference as horizontal lines."""
    plt, fig, ax = _figure()
    series: dict[str, list] = {}
    groups = defaultdict(list)
    for r in results:
        if r.level is not None:
            groups[f"{r.teacher} {r.format}"].append(r)
    for label, runs in sorted(groups.items()):
        runs.sort(key=lambda r: r.level)
        ax.errorbar(
            [r.level for r in runs],
            [100 * r.accuracy for r in runs],
            yerr=_errors(runs),
            marker="o",
            capsize=4,
            label=label,
        )
        series[label] = [(r.level, r.accuracy) for r in runs]
    flat = [(r.config, r.accuracy) for r in results if r.level is None]
    if base is not None:
        flat.append(("base model", base))
    for (label, accuracy), style in zip(flat, ("--", ":", "-."), strict=False):
        ax.axhline(100 * accuracy, linestyle=style, color="grey", label=label)
        series[label] = [(None, accuracy)]
    ax.set(
        xlabel="CoT granularity level",
        ylabel="accuracy (%)",
        xticks=range(1, 7),
        title=f"{student}: accuracy vs granularity",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return series


def accuracy_by_category(results, key: str, base: float | None, path: Path, student: str) -> dict:
    """Grouped bars comparing the values of `key` (format or teacher) with everything else held
    fixed: formats of one teacher at one level, or teachers of one format at one level. A group
    is drawn where more than one value was measured; a bar per value, with 95% interval bars.
    Returns value -> [(group label, accuracy)]."""
    plt, fig, ax = _figure()
    fixed = "teacher" if key == "format" else "format"
    groups: dict[tuple, dict] = defaultdict(dict)
    for r in results:
        if r.level is not None:
            groups[(getattr(r, fixed), r.level)][getattr(r, key)] = r
    slots = sorted(group for group, runs in groups.items() if len(runs) > 1)
    several = len({held for held, _ in slots}) > 1
    labels = [f"{held} L{level}" if several else f"level {level}" for held, level in slots]
    values = sorted({value for slot in slots for value in groups[slot]})
    width = 0.8 / max(len(values), 1)
    series: dict[str, list] = {}
    for i, value in enumerate(values):
        points = [(n, groups[slot][value]) for n, slot in enumerate(slots) if value in groups[slot]]
        runs = [run for _, run in points]
        ax.bar(
            [n + i * width for n, _ in points],
            [100 * r.accuracy for r in runs],
            width,
            yerr=_errors(runs),
            capsize=3,
            label=str(value),
        )
        series[str(value)] = [(labels[n], run.accuracy) for n, run in points]
    if base is not None:
        ax.axhline(100 * base, linestyle="--", color="grey", label="base model")
    ax.set_xticks([n + 0.4 - width / 2 for n in range(len(slots))], labels)
    title = f"{student}: accuracy by {key}" + (
        f" ({fixed} {slots[0][0]})" if not several and slots else ""
    )
    ax.set(ylabel="accuracy (%)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return series
