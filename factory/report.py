"""Stage 8, report: what the runs say about which supervision suits each student.

Reads every finished run of a recipe (student x config x seed), pools seeds, and writes a
Markdown report with PNG plots as in the paper: accuracy against granularity per student with
95% interval bars and the base model as a reference line, accuracy by format and by teacher, a
table of every run, and a recommendation per student that says plainly when the best
configuration is not separated from the next by more than the intervals.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from factory.manifest import Manifest
from factory.paths import EVAL_METRICS, REPORT, REPORT_RESULTS, TRAINING_METRICS, RunFolder
from factory.recipe import Recipe
from factory.stats import wilson_interval


@dataclass
class RunResult:
    """One student on one config, pooled over its seeds."""

    student: str
    config: str
    teacher: str
    format: str | None
    level: int | None
    seeds: list[int]
    accuracies: list[float]
    correct: int
    total: int
    train_seconds: float
    mean_steps: float | None
    mean_tokens: float | None
    teacher_accuracy: float | None
    ci95: list[float] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def spread(self) -> float:
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0


def collect(run: RunFolder) -> tuple[list[RunResult], dict[str, dict]]:
    """Every finished run, and each student's base-model metrics."""
    stats = Manifest.load(run.manifest).configs
    results, bases = [], {}
    for student_dir in sorted((run.root / "students").glob("*")):
        base = _read(student_dir / "base" / EVAL_METRICS)
        if base:
            bases[student_dir.name] = base
        for config_dir in sorted(p for p in student_dir.iterdir() if p.name in stats):
            result = _pooled(student_dir.name, config_dir, stats[config_dir.name])
            if result:
                results.append(result)
    return results, bases


def _pooled(student: str, config_dir: Path, stats: dict) -> RunResult | None:
    seeds, metrics, seconds = [], [], []
    for seed_dir in sorted(config_dir.glob("seed-*"), key=lambda p: int(p.name[5:])):
        evaluated = _read(seed_dir / "eval" / EVAL_METRICS)
        trained = _read(seed_dir / TRAINING_METRICS)
        if evaluated and trained:
            seeds.append(int(seed_dir.name[5:]))
            metrics.append(evaluated)
            seconds.append(trained["seconds"])
    if not metrics:
        return None
    correct, total = sum(m["correct"] for m in metrics), sum(m["total"] for m in metrics)
    return RunResult(
        student=student,
        config=config_dir.name,
        teacher=stats["teacher"],
        format=stats["format"],
        level=stats["level"],
        seeds=seeds,
        accuracies=[m["accuracy"] for m in metrics],
        correct=correct,
        total=total,
        train_seconds=statistics.mean(seconds),
        mean_steps=stats["mean_steps"],
        mean_tokens=stats["mean_tokens"],
        teacher_accuracy=stats["teacher_accuracy"],
        ci95=[round(x, 4) for x in wilson_interval(correct, total)],
    )


def _read(path: Path) -> dict | None:
    """A finished stage's JSON record, or None: not there yet, or torn by a kill (the sweep
    redoes that run, and the report leaves it out until then)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def recommend(results: list[RunResult], base: dict | None = None) -> dict:
    """The best configuration of one student: how far ahead of the others it is, which of them
    are within the sampling noise of it, and its lift over the untrained base model."""
    ranked = sorted(results, key=lambda r: r.accuracy, reverse=True)
    best = ranked[0]
    tied = [r for r in ranked if math.isclose(r.accuracy, best.accuracy)]
    below = ranked[len(tied) :]
    names = " and ".join(f"`{r.config}`" for r in tied)
    advice = {"best": best.config, "tied": [r.config for r in tied[1:]]}
    if not below:
        text = (
            f"{names} tie at {_pct(best.accuracy)}: nothing separates them."
            if len(tied) > 1
            else f"`{best.config}` ({_pct(best.accuracy)}) is the only configuration measured."
        )
        advice.update(runner_up=None, margin=None, separated=None)
    else:
        second = below[0]
        margin = best.accuracy - second.accuracy
        separated = best.ci95[0] > second.ci95[1]
        verdict = (
            "its 95% interval lies above the runner-up's, so the difference is larger than "
            "the sampling noise"
            if separated
            else "the 95% intervals overlap, so this difference is not larger than the "
            "sampling noise: treat the top configurations as tied and measure on more test "
            "problems or seeds before choosing"
        )
        lead = (
            f"{names} tie at {_pct(best.accuracy)} and beat"
            if len(tied) > 1
            else f"`{best.config}` ({_pct(best.accuracy)}) beats"
        )
        text = (
            f"{lead} the runner-up `{second.config}` ({_pct(second.accuracy)}) by "
            f"{100 * margin:.1f} points; {verdict}."
        )
        noise = [r.config for r in below if r.ci95[1] >= best.ci95[0]]
        clear = [r.config for r in below if r.ci95[1] < best.ci95[0]]
        if noise:
            text += f" Within the noise of the best: {_names(noise)}."
        if clear:
            text += f" Clearly below it (interval entirely under the best's): {_names(clear)}."
        advice.update(
            runner_up=second.config,
            margin=round(margin, 4),
            separated=separated,
            within_noise=noise,
            clearly_below=clear,
        )
    if base:
        lift = best.accuracy - base["accuracy"]
        beyond = best.ci95[0] > base["ci95"][1]
        text += (
            f" Over the untrained base model ({_pct(base['accuracy'])}): {100 * lift:+.1f} "
            f"points, {'beyond' if beyond else 'within'} the sampling noise."
        )
        advice.update(lift_over_base=round(lift, 4), beyond_base_noise=beyond)
    return {**advice, "text": text}


def _names(configs: list[str]) -> str:
    return ", ".join(f"`{c}`" for c in configs)


def write_report(recipe: Recipe, run: RunFolder) -> Path:
    """Write `report.md`, `results.json` and the plots into the run's `report/` folder."""
    results, bases = collect(run)
    out = run.report
    out.mkdir(parents=True, exist_ok=True)
    students = sorted({r.student for r in results})
    plots = {}
    for student in students:
        mine = [r for r in results if r.student == student]
        base = bases.get(student, {}).get("accuracy")
        plots[student] = _plots(mine, base, out, student)
    recommendations = {
        s: recommend([r for r in results if r.student == s], bases.get(s)) for s in students
    }
    (out / REPORT_RESULTS).write_text(
        json.dumps(
            {
                "recipe": recipe.name,
                "tag": recipe.tag,
                "runs": [
                    {**asdict(r), "accuracy": r.accuracy, "spread": r.spread} for r in results
                ],
                "base": bases,
                "recommendations": recommendations,
            },
            indent=2,
        )
        + "\n"
    )
    (out / REPORT).write_text(render_markdown(recipe, results, bases, recommendations, plots))
    return out


def render_markdown(
    recipe: Recipe, results: list[RunResult], bases: dict, recommendations: dict, plots: dict
) -> str:
    lines = [
        f"# Results: {recipe.name}",
        "",
        f"Recipe tag `{recipe.tag}`; every run trained with the same settings "
        f"(`train` section of the recipe) and evaluated on the same held-out problems.",
        "",
    ]
    for student, advice in recommendations.items():
        base = bases.get(student)
        lines += [f"## {student}", "", f"**Recommendation.** {advice['text']}", ""]
        if base:
            lines += [
                f"Base model without distillation: {_pct(base['accuracy'])} "
                f"{_interval(base['ci95'])} on {base['total']} problems.",
                "",
            ]
        lines += [f"![{name}]({file})" for name, file in plots[student].items()] + [""]
        lines += _table([r for r in results if r.student == student]) + [""]
    return "\n".join(lines)


def _table(results: list[RunResult]) -> list[str]:
    rows = [
        "| config | teacher | steps | tokens per completion | teacher accuracy | "
        "student accuracy | 95% interval | seeds (spread) | training time |",
        "|---|---|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in sorted(results, key=lambda r: (r.format or "~", r.level or 0, r.config)):
        teacher = "–" if r.teacher_accuracy is None else _pct(r.teacher_accuracy)
        rows.append(
            f"| `{r.config}` | {r.teacher} | {_num(r.mean_steps)} | {_num(r.mean_tokens)} | "
            f"{teacher} | {_pct(r.accuracy)} | {_interval(r.ci95)} | "
            f"{len(r.seeds)} (±{100 * r.spread:.1f}) | {r.train_seconds / 60:.1f} min |"
        )
    return rows


def _plots(results: list[RunResult], base: float | None, out: Path, student: str) -> dict:
    """PNG plots for one student: by granularity, by format, by teacher."""
    from factory.plots import accuracy_by_category, accuracy_by_level

    files = {"accuracy vs granularity": f"{student}-granularity.png"}
    accuracy_by_level(results, base, out / files["accuracy vs granularity"], student)
    for key in ("format", "teacher"):
        if len({getattr(r, key) for r in results if r.level}) > 1:
            files[f"accuracy by {key}"] = f"{student}-{key}.png"
            accuracy_by_category(results, key, base, out / files[f"accuracy by {key}"], student)
    return files


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _interval(ci: list[float]) -> str:
    return f"[{100 * ci[0]:.1f}%, {100 * ci[1]:.1f}%]"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"
