"""Cards: dataset cards rendered from the Jinja templates in `cards/` through huggingface_hub's
card classes, so their YAML is what the Hub expects (model cards: factory/model_cards.py)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from factory import __version__
from factory.model_cards import render_model_card
from factory.prompts import describe
from factory.recipe import GymSource, HubSource, Recipe, ReplayTeacher, teacher_name
from factory.recipe.schema import ProgramTeacher

TEMPLATES = files("factory.card_templates")
__all__ = ["dataset_configs", "render_dataset_card", "render_model_card", "size_category"]
SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
]


def dataset_configs(stats: dict[str, dict], splits: list[str]) -> list[dict[str, Any]]:
    """The card's `configs:` entries: every non-empty config, the first one the default."""
    configs = [
        {"config_name": name, "data_files": [{"split": "train", "path": f"{name}/train-*"}]}
        for name, s in stats.items()
        if s["kept"]
    ]
    if configs:
        configs[0]["default"] = True
    configs.append(
        {
            "config_name": "problems",
            "data_files": [{"split": split, "path": f"problems/{split}-*"} for split in splits],
        }
    )
    return configs


def size_category(rows: int) -> str:
    return next((label for limit, label in SIZE_CATEGORIES if rows < limit), "n>1T")


def render_dataset_card(
    recipe: Recipe,
    stats: dict,
    split_sizes: dict[str, int],
    samples: dict,
    example_prompt: dict | None = None,
    skipped: dict[str, dict[str, int]] | None = None,
):
    from huggingface_hub import DatasetCard, DatasetCardData

    spec = recipe.dataset
    configs = dataset_configs(stats, list(split_sizes))
    source_datasets = spec.source_datasets or (
        [recipe.source.dataset] if isinstance(recipe.source, HubSource) else []
    )
    card_data = DatasetCardData(
        license=spec.license,
        language=spec.language,
        task_categories=["text-generation", "question-answering"],
        size_categories=[size_category(sum(s["kept"] for s in stats.values()))],
        source_datasets=source_datasets or None,
        annotations_creators=["machine-generated"],
        pretty_name=spec.pretty_name or recipe.name,
        tags=["chain-of-thought", "distillation", "synthetic", "cot-factory", *spec.tags],
        configs=configs,
    )
    return DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "dataset_card.md.jinja"),
        example_prompt=example_prompt,
        skipped_note=_skipped_note(skipped or {}),
        **_dataset_card_vars(recipe, stats, split_sizes, samples, configs),
    )


def _dataset_card_vars(recipe: Recipe, stats, split_sizes, samples, configs) -> dict[str, Any]:
    missing = {n: s["problems_missing"] for n, s in stats.items() if s["problems_missing"]}
    return {
        "pretty_name": recipe.dataset.pretty_name or recipe.name,
        "description": recipe.description.strip(),
        "recipe_name": recipe.name,
        "recipe_hash": recipe.hash,
        "tag": recipe.tag,
        "repo_id": recipe.dataset.repo_id,
        "stats": {name: _stat_view(s) for name, s in stats.items()},
        "samples_per_problem": recipe.cot.samples,
        "train_problems": split_sizes.get("train", 0),
        "test_problems": split_sizes.get("test", 0),
        "drop_reasons": recipe.cot.drop,
        "missing_note": _missing_note(missing),
        "mixture_lines": _mixture_lines(stats),
        "thinking_rows": _thinking_rows(stats),
        "max_reasoning_tokens": recipe.cot.max_reasoning_tokens,
        "usage_rows": [{"config": n, **s["usage"]} for n, s in stats.items() if "usage" in s],
        "sampling_rows": _sampling_rows(recipe, stats),
        "max_attempts": recipe.cot.max_attempts or recipe.cot.samples,
        "decontamination_note": _decontamination_note(recipe, stats),
        "default_config": configs[0]["config_name"],
        "task": recipe.source.task,
        "source_text": _source_text(recipe.source),
        "teachers": [{"name": teacher_name(t), "text": _teacher_text(t)} for t in recipe.teacher],
        "prompt_lines": sorted(
            {
                f"`{s['format']}-L{s['level']}`: {describe(s['format'], s['level'])}"
                for s in stats.values()
                if s["format"]
            }
        ),
        "samples": samples,
        "recipe_file": recipe.path.name if recipe.path else f"{recipe.name}.yaml",
        "recipe_text": recipe.path.read_text().strip() if recipe.path else "",
        "version": __version__,
    }


def _sampling_rows(recipe: Recipe, stats: dict) -> list[dict]:
    """Per teacher config: attempts, kept traces, pass rate, solved share, difficulty."""
    teachers = {teacher_name(t) for t in recipe.teacher}
    return [
        {
            "config": name,
            "traces": s["traces"],
            "kept": s["kept"],
            "pass_rate": "–" if s["pass_rate"] is None else f"{100 * s['pass_rate']:.1f}%",
            "solved": "–" if s["solved_share"] is None else f"{100 * s['solved_share']:.1f}%",
            "difficulty": " · ".join(str(n) for n in s["difficulty"].values()) or "–",
        }
        for name, s in stats.items()
        if s["teacher"] in teachers
    ]


def _thinking_rows(stats: dict) -> list[dict]:
    """Per config whose rows carry a reasoning teacher's thinking: where it was found, and the
    distribution of its length in tokens and steps (mean, then min · p25 · median · p75 · max)."""
    rows = []
    for name, s in stats.items():
        if found := s.get("reasoning"):
            rows.append(
                {
                    "config": name,
                    "in_completion": "yes" if s.get("thinking") else "no",
                    "rows": found["rows"],
                    "sources": ", ".join(f"`{k}` {n}" for k, n in found["sources"].items()),
                    "tokens": _spread(found["tokens"]),
                    "steps": _spread(found["steps"]),
                    "endpoint": _spread(found["endpoint_tokens"]),
                }
            )
    return rows


def _spread(d: dict | None) -> str:
    if d is None:
        return "–"
    return f"{d['mean']} ({d['min']} · {d['p25']} · {d['median']} · {d['p75']} · {d['max']})"


def _mixture_lines(stats: dict) -> list[str]:
    """`mix-L2-L4` = `cot-L2` 690 + `cot-L3` 681 rows, for every mixture config."""
    return [
        f"`{name}` = " + " + ".join(f"`{m}` {n}" for m, n in s["composition"].items()) + " rows"
        for name, s in stats.items()
        if "composition" in s
    ]


def _decontamination_note(recipe: Recipe, stats: dict) -> str:
    """What decontamination checked, and the rows per config whose question an evaluation set
    also holds."""
    spec = recipe.cot.decontaminate
    sets = ", ".join(f"`{n}`" for n in ["test", *(e.name for e in spec.against)])
    found = {n: s["contamination"] for n, s in stats.items() if s.get("contamination")}
    what = "dropped" if spec.action == "drop" else "kept and flagged in `contaminated_by`"
    head = (
        f"**Decontamination**: every training question was checked against {sets} (the same "
        f"normalised text, or a shared run of {spec.ngram} words)"
    )
    if not found:
        return f"{head}: no match."
    parts = "; ".join(
        f"`{n}`: " + ", ".join(f"{k} in `{e}`" for e, k in c.items()) for n, c in found.items()
    )
    return f"{head}. Rows whose question matched ({what}): {parts}."


def _stat_view(s: dict) -> dict:
    dropped = ", ".join(f"{reason} {n}" for reason, n in s["dropped"].items()) or "0"
    accuracy = "–" if s["teacher_accuracy"] is None else f"{100 * s['teacher_accuracy']:.1f}%"
    return {**s, "dropped_text": dropped, "accuracy_text": accuracy}


def _skipped_note(skipped: dict[str, dict[str, int]]) -> str:
    """Which source rows did not become problems, and why (`source.bad_rows: skip`, and test
    problems that were also training problems)."""
    parts = [
        f"{split}: " + ", ".join(f"{n} {reason}" for reason, n in reasons.items())
        for split, reasons in skipped.items()
        if any(reasons.values())
    ]
    return f"Source rows left out, by split and reason: {'; '.join(parts)}." if parts else ""


def _missing_note(missing: dict[str, int]) -> str:
    if not missing:
        return ""
    parts = ", ".join(f"`{name}` {n}" for name, n in missing.items())
    return (
        f"Problems with no rationale from the teacher or source (not counted as dropped): {parts}."
    )


def _source_text(source) -> str:
    if isinstance(source, HubSource):
        return f"Hub dataset `{source.dataset}`" + (
            f" (`{source.subset}`)" if source.subset else ""
        )
    if isinstance(source, GymSource):
        return f"reasoning-gym `{source.dataset}` (seed {source.seed})"
    kind = "alpaca JSON" if source.kind == "alpaca" else "local file"
    return f"{kind} `{Path(source.train).name}`" + (
        f" (test: `{Path(source.test).name}`)" if source.test else ""
    )


def _teacher_text(spec) -> str:
    if isinstance(spec, ReplayTeacher):
        return f"replayed from existing rationales ({len(spec.files)} files)"
    if isinstance(spec, ProgramTeacher):
        return (
            "written by a program (the `program` backend; its version is in `teacher_params`) "
            "from each reasoning-gym problem's own solution, one step per operation at the "
            "granularity and format described below: no model was asked, the arithmetic is exact"
        )
    sampling = [f"{k}={getattr(spec, k)}" for k in ("temperature", "top_p", "max_tokens", "seed")]
    extras = [f"{k}={v}" for k in ("reasoning_effort", "extra_body") if (v := getattr(spec, k, 0))]
    marked = {True: "; a reasoning model", False: "; not treated as a reasoning model"}
    params = ", ".join(sampling + extras) + marked.get(spec.reasoning, "")
    asked = f", asked about the first {spec.limit} training problems" if spec.limit else ""
    return f"`{spec.model}` through the `{spec.backend}` backend ({params}){asked}"
