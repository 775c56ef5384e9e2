"""Stage 8, report: what the runs say about which supervision suits each student.

Reads every finished run of a recipe (student x config x seed), pools seeds, and writes a
Markdown report with PNG plots as in the paper: accuracy against granularity per student with
95% interval bars and the base model as a reference line, accuracy by format and by teacher, a
table of every run, paired comparisons of the student's configs and base model on the same test
problems (`factory.comparisons`), and a recommendation per student that says which differences
are significant after Holm's correction and which are within the noise.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from factory.comparisons import (
    ALPHA,
    ANSWER_ONLY,
    BASE,
    METHODS,
    Comparison,
    Outcomes,
    between,
    compare_all,
    ranked,
    recommend,
)
from factory.files import read_jsonl
from factory.manifest import Manifest
from factory.paths import (
    EVAL_METRICS,
    PREDICTIONS,
    REPORT,
    REPORT_RESULTS,
    TRAINING_METRICS,
    RunFolder,
)
from factory.recipe import Recipe
from factory.stats import pooled_interval, wilson_interval


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
    truncated: int = 0  # answers cut off by the evaluation's max_new_tokens
    precision: str = ""  # how its seeds trained and were evaluated: `bf16 autocast / bfloat16`
    thinking_tokens: float | None = None  # mean thinking tokens per answer, for a thinking student

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
    seeds, metrics, seconds, precisions, predictions = [], [], [], set(), []
    for seed_dir in sorted(config_dir.glob("seed-*"), key=lambda p: int(p.name[5:])):
        evaluated = _read(seed_dir / "eval" / EVAL_METRICS)
        trained = _read(seed_dir / TRAINING_METRICS)
        if evaluated and trained:
            seeds.append(int(seed_dir.name[5:]))
            metrics.append(evaluated)
            predictions.append(seed_dir / "eval" / PREDICTIONS)
            seconds.append(trained["seconds"])
            decoded = evaluated.get("dtype", "served" if "served_model" in evaluated else "?")
            precisions.add(f"{trained.get('precision', '?')} / {decoded}")
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
        ci95=[round(x, 4) for x in _interval_over_problems(correct, total, predictions)],
        truncated=sum(m.get("truncated", 0) for m in metrics),
        precision=", ".join(sorted(precisions)),
        thinking_tokens=_mean(
            [m["mean_thinking_tokens"] for m in metrics if "mean_thinking_tokens" in m]
        ),
    )


def _interval_over_problems(correct: int, total: int, predictions: list[Path]) -> tuple:
    """One seed: the Wilson interval. Several: the interval over the problems, each scored as
    the share of seeds that solved it (`stats.pooled_interval`), since k seeds of one config are
    not k times as many problems."""
    if len(predictions) == 1:
        return wilson_interval(correct, total)
    return pooled_interval(Outcomes.pooled([read_jsonl(p) for p in predictions]).shares())


def _mean(values: list[float]) -> float | None:
    return round(statistics.mean(values), 1) if values else None


def _read(path: Path) -> dict | None:
    """A finished stage's JSON record, or None: not there yet, or torn by a kill (the sweep
    redoes that run, and the report leaves it out until then)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def paired(run: RunFolder, results: list[RunResult], bases: dict) -> dict[str, list]:
    """Per student, the comparisons of every pair of its configs and base model (Holm's
    correction over that family), from the predictions of the seeds `collect` pooled."""
    comparisons = {}
    for student in sorted({r.student for r in results}):
        arms = {
            r.config: Outcomes.pooled(
                [read_jsonl(run.evaluation(student, r.config, s) / PREDICTIONS) for s in r.seeds]
            )
            for r in results
            if r.student == student
        }
        order = ranked(_accuracies(results, student))
        if student in bases:
            arms[BASE] = Outcomes.pooled([read_jsonl(run.base_eval(student) / PREDICTIONS)])
            order.append(BASE)
        comparisons[student] = compare_all(arms, order)
    return comparisons


def write_report(recipe: Recipe, run: RunFolder) -> Path:
    """Write `report.md`, `results.json` and the plots into the run's `report/` folder."""
    results, bases = collect(run)
    comparisons = paired(run, results, bases)
    out = run.report
    out.mkdir(parents=True, exist_ok=True)
    students = sorted({r.student for r in results})
    plots = {}
    for student in students:
        mine = [r for r in results if r.student == student]
        base = bases.get(student, {}).get("accuracy")
        plots[student] = _plots(mine, base, out, student)
    recommendations = {s: recommend(_accuracies(results, s), comparisons[s]) for s in students}
    document = {
        "recipe": recipe.name,
        "tag": recipe.tag,
        "runs": [{**asdict(r), "accuracy": r.accuracy, "spread": r.spread} for r in results],
        "base": bases,
        "recommendations": recommendations,
        "comparisons": {s: [asdict(c) for c in comparisons[s]] for s in students},
        "shown": {  # the comparisons report.md shows, as (a, b)
            s: [(c.a, c.b) for c in _shown(_accuracies(results, s), comparisons[s])]
            for s in students
        },
        "comparison_methods": METHODS,
    }
    (out / REPORT_RESULTS).write_text(json.dumps(document, indent=2) + "\n")
    (out / REPORT).write_text(
        render_markdown(recipe, results, bases, recommendations, plots, comparisons)
    )
    return out


def _accuracies(results: list[RunResult], student: str) -> dict[str, float]:
    return {r.config: r.accuracy for r in results if r.student == student}


def render_markdown(
    recipe: Recipe,
    results: list[RunResult],
    bases: dict,
    recommendations: dict,
    plots: dict,
    comparisons: dict,
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
        mine = [r for r in results if r.student == student]
        lines += [f"## {student}", "", f"**Recommendation.** {advice['text']}", ""]
        if base:
            lines += [
                f"Base model without distillation: {_pct(base['accuracy'])} "
                f"{_interval(base['ci95'])} on {base['total']} problems.",
                "",
            ]
        lines += [f"![{name}]({file})" for name, file in plots[student].items()] + [""]
        lines += _table(mine) + [""]
        lines += _comparison_table(_accuracies(results, student), comparisons[student]) + [""]
    return "\n".join(lines)


def _table(results: list[RunResult]) -> list[str]:
    rows = [
        "| config | teacher | steps | tokens per completion | teacher accuracy | "
        "student accuracy | 95% interval | cut off | seeds (spread) | training time | "
        "precision (training / evaluation) |",
        "|---|---|---:|---:|---:|---:|---|---:|---|---:|---|",
    ]
    for r in sorted(results, key=lambda r: (r.format or "~", r.level or 0, r.config)):
        teacher = "–" if r.teacher_accuracy is None else _pct(r.teacher_accuracy)
        rows.append(
            f"| `{r.config}`{_thinks(r)} | {r.teacher} | {_num(r.mean_steps)} | "
            f"{_num(r.mean_tokens)} | "
            f"{teacher} | {_pct(r.accuracy)} | {_interval(r.ci95)} | {r.truncated} | "
            f"{len(r.seeds)} (±{100 * r.spread:.1f}) | {r.train_seconds / 60:.1f} min | "
            f"{r.precision} |"
        )
    return rows + [
        "",
        "Student accuracy pools seeds per problem; its 95% interval is Wilson's over the test "
        "problems, for several seeds at the effective number of problems their agreement "
        "leaves (a second seed that repeats the first adds no problem).",
    ]


def _thinks(r: RunResult) -> str:
    return "" if r.thinking_tokens is None else f" (thinks {r.thinking_tokens:.0f} tokens)"


def _shown(accuracies: dict[str, float], comparisons: list[Comparison]) -> list[Comparison]:
    """The best against each other config, each config against `answer-only` and against the
    base model, once each; every pair is in results.json."""
    order = ranked(accuracies)
    pairs = [(order[0], c) for c in order[1:]] + [(c, ANSWER_ONLY) for c in order]
    shown: dict[frozenset, Comparison] = {}
    for a, b in pairs + [(c, BASE) for c in order]:
        c = between(comparisons, a, b)
        if c and frozenset((a, b)) not in shown:
            shown[frozenset((a, b))] = c
    return list(shown.values())


def _comparison_table(accuracies: dict[str, float], comparisons: list[Comparison]) -> list[str]:
    rows = [
        "**Paired comparisons** on the test problems both sides evaluated: difference in "
        "accuracy (points) with a 95% adjusted Wald interval; p from an exact McNemar test (one "
        "evaluation each) or an exact sign-flip test on each problem's share of seeds right; "
        f"Holm's correction over all {len(comparisons)} comparisons of this student, significant "
        f"where the adjusted p <= {ALPHA}. Every pair is in `results.json`.",
        "",
        "| comparison | problems | accuracies | difference | 95% interval | better on | "
        "p | Holm p | verdict |",
        "|---|---:|---|---:|---|---|---:|---:|---|",
    ]
    for c in _shown(accuracies, comparisons):
        rows.append(
            f"| `{c.a}` vs `{c.b}` | {c.n} | {_pct(c.accuracy_a)} vs {_pct(c.accuracy_b)} | "
            f"{100 * c.difference:+.1f} | [{100 * c.ci95[0]:+.1f}, {100 * c.ci95[1]:+.1f}] | "
            f"{c.a_better} / {c.b_better} | {c.p:.3g} | {c.p_holm:.3g} | "
            f"{'significant' if c.significant else 'noise'} |"
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
