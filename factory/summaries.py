"""What the CLI prints after each command, as text: build tables, student tables, reproductions.
Pure formatting; `factory.cli` does the printing."""

from __future__ import annotations


def build_table(built) -> str:
    """The per-config table of a build: rows kept and dropped, teacher accuracy, granularity."""
    recipe, manifest = built.recipe, built.manifest
    lines = [
        f"built {recipe.dataset.repo_id} ({recipe.tag}) in {built.seconds:.0f}s",
        f"{'config':<24} {'rows':>6} {'dropped':>8} {'teacher acc':>12} {'steps':>6} {'tokens':>7}",
    ]
    for name, s in manifest.configs.items():
        acc = "-" if s["teacher_accuracy"] is None else f"{100 * s['teacher_accuracy']:.1f}%"
        dropped = sum(s["dropped"].values())
        lines.append(
            f"{name:<24} {s['kept']:>6} {dropped:>8} {acc:>12} "
            f"{_or_dash(s['mean_steps']):>6} {_or_dash(s['mean_tokens']):>7}"
        )
    lines += [f"source: {note}" for note in source_notes(manifest.source)]
    lines.append(f"dataset folder: {built.run.dataset}")
    return "\n".join(lines)


def source_notes(source: dict[str, dict]) -> list[str]:
    """One line per split that lost problems on the way in: how many, and why."""
    notes = []
    for split, counts in source.items():
        skipped = {reason: n for reason, n in counts.get("skipped", {}).items() if n}
        if skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in skipped.items())
            notes.append(f"{split}: {counts.get('kept', 0)} problems kept, skipped {reasons}")
    return notes


def published_line(kind: str, record) -> str:
    state = "new commit" if record.created else "unchanged, no new commit"
    where = record.path or record.url
    return f"published {kind} {record.repo_id} @ {record.commit[:12]} ({state}): {where}"


def load_hint(record, tag: str, registry) -> str:
    """How to load a published dataset by its repo id, from the local registry or the Hub."""
    if record.target == "local":
        folder = (
            f"snapshot_download({record.repo_id!r}, repo_type='dataset', revision={tag!r}, "
            f"cache_dir={str(registry)!r}, local_files_only=True)"
        )
        return f"  load:  load_dataset({folder}, CONFIG)\n  files: {record.path}"
    return f"  load:  load_dataset({record.repo_id!r}, CONFIG, revision={tag!r})"


def students_table(entries) -> str:
    lines = [
        f"{'student':<16} {'config':<20} {'base':>7} {'distilled':>10} {'95% interval':>16} "
        f"{'cut off':>8}  published"
    ]
    for e in entries:
        low, high = e.ci95
        lines.append(
            f"{e.student:<16} {e.config:<20} {100 * e.base_accuracy:>6.1f}% "
            f"{100 * e.accuracy:>9.1f}% {f'[{100 * low:.1f}, {100 * high:.1f}]':>16} "
            f"{e.truncated:>8}  {e.published.repo_id}@{e.published.commit[:8]}"
        )
        lines.append(f"{'':<16} card: {e.published.path or e.release}/README.md")
    return "\n".join(lines)


def accuracy_line(label: str, metrics: dict) -> str:
    low, high = metrics["ci95"]
    line = (
        f"{label}: accuracy {100 * metrics['accuracy']:.1f}% "
        f"[{100 * low:.1f}%, {100 * high:.1f}%] on {metrics['total']} problems"
    )
    if "mean_thinking_tokens" in metrics:
        line += (
            f", thinking {metrics['mean_thinking_tokens']} tokens per answer "
            f"({metrics['thinking_cut']} cut off while thinking)"
        )
    return line


def reproduction_table(result) -> str:
    meta = result.meta
    lines = [
        f"reproduced {result.adapter.repo_id} @ {result.adapter.commit[:12]}: student "
        f"{meta['student']} on {meta['config']}, dataset {meta['dataset_repo']} @ "
        f"{result.dataset.commit[:12]}",
        f"{'':<12} {'accuracy':>9} {'95% interval':>16} {'n':>5}",
    ]
    for label, metrics in (("card", result.published), ("reproduced", result.reproduced)):
        low, high = metrics["ci95"]
        lines.append(
            f"{label:<12} {100 * metrics['accuracy']:>8.1f}% "
            f"{f'[{100 * low:.1f}, {100 * high:.1f}]':>16} {metrics['total']:>5}"
        )
    low, high = result.published["ci95"]
    inside = low <= result.reproduced["accuracy"] <= high
    lines.append(
        f"{'difference':<12} {100 * result.difference:>+7.1f} pp "
        f"({'within' if inside else 'outside'} the card's 95% interval)"
    )
    lines.append(f"outputs: {result.out}")
    return "\n".join(lines)


def _or_dash(value) -> str:
    return "-" if value is None else str(value)


def comparisons_table(results: dict, student: str) -> str:
    """The paired comparisons the report shows for `student` (its `results.json`)."""
    shown = {tuple(pair) for pair in results["shown"].get(student, [])}
    lines = [
        f"{'comparison':<36} {'accuracies':>15} {'difference':>11} {'95% interval':>16} "
        f"{'Holm p':>8}  verdict"
    ]
    for c in results["comparisons"].get(student, []):
        if (c["a"], c["b"]) not in shown:
            continue
        low, high = (100 * x for x in c["ci95"])
        accuracies = f"{100 * c['accuracy_a']:.1f}% vs {100 * c['accuracy_b']:.1f}%"
        lines.append(
            f"{c['a'] + ' vs ' + c['b']:<36} {accuracies:>15} "
            f"{100 * c['difference']:>+10.1f} {f'[{low:+.1f}, {high:+.1f}]':>16} "
            f"{c['p_holm']:>8.2g}  {'significant' if c['significant'] else 'noise'}"
        )
    return "\n".join(lines)


def timings_line(timings: dict[str, float]) -> str:
    """`time by stage: models 21 s, dataset 9 s, ... (total 6.1 min)`."""
    stages = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in timings.items())
    return f"time by stage: {stages} (total {sum(timings.values()) / 60:.1f} min)"
