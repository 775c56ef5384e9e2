"""Model cards: the card of one distilled student, rendered from `cards/model_card.md.jinja`
through huggingface_hub's `ModelCard`, so its YAML (with a `model-index`) is what the Hub
expects."""

from __future__ import annotations

from importlib.resources import files

from factory.recipe import Recipe
from factory.recipe.schema import DEFAULT_MAX_NEW_TOKENS

TEMPLATES = files("factory.card_templates")


def render_model_card(
    recipe: Recipe,
    *,
    student: str,
    base_model: str,
    base_model_note: str,
    config: str,
    supervision: str,
    teacher: str,
    repo_id: str,
    dataset_revision: str,
    base: dict,
    distilled: dict,
    metrics: dict,
    sft: dict,
    lora: dict | None,
    example_question: str,
    reproduce_command: str,
):
    """The card of one distilled student: Hub YAML with a `model-index`, results, how to use it,
    how it was trained, how to reproduce it."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    dataset_repo = recipe.dataset.repo_id
    card_data = ModelCardData(
        model_name=repo_id.split("/")[-1],
        base_model=base_model,
        library_name="peft" if lora else "transformers",
        pipeline_tag="text-generation",
        license=recipe.dataset.license,
        language=recipe.dataset.language,
        datasets=[dataset_repo],
        tags=[
            "cot-factory",
            "chain-of-thought",
            "distillation",
            "trl",
            "sft",
            *(["lora"] if lora else []),
            config,
        ],
        eval_results=[
            EvalResult(
                task_type="text-generation",
                task_name="Chain-of-thought problem solving",
                dataset_type=dataset_repo,
                dataset_name=dataset_repo,
                dataset_config="problems",
                dataset_split="test",
                dataset_revision=dataset_revision,
                metric_type="accuracy",
                metric_name="Accuracy",
                metric_value=round(distilled["accuracy"], 4),
            )
        ],
    )
    lift = 100 * (distilled["accuracy"] - base["accuracy"])
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "model_card.md.jinja"),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        student_name=student,
        base_model=base_model,
        base_model_note=base_model_note,
        config=config,
        dataset_repo=dataset_repo,
        dataset_revision=dataset_revision,
        supervision=supervision,
        teacher=teacher,
        recipe_name=recipe.name,
        tag=recipe.tag,
        base=base,
        distilled=distilled,
        lift=f"{lift:+.1f}",
        significance=_significance(base, distilled),
        max_new_tokens=distilled.get("max_new_tokens")
        or recipe.eval.max_new_tokens
        or DEFAULT_MAX_NEW_TOKENS,
        metrics=metrics,
        train_rows=metrics["rows"],
        sft=sft,
        lora=lora,
        example_question=example_question.replace('"', '\\"'),
        reproduce_command=reproduce_command,
        recipe_text=recipe.path.read_text().strip() if recipe.path else "",
        pct=lambda x: f"{100 * x:.1f}%",
        interval=lambda ci: f"[{100 * ci[0]:.1f}%, {100 * ci[1]:.1f}%]",
    )


def _significance(base: dict, distilled: dict) -> str:
    (b_low, b_high), (d_low, d_high) = base["ci95"], distilled["ci95"]
    if d_low > b_high or b_low > d_high:
        return "The 95% intervals do not overlap: the difference is larger than the sampling noise."
    return (
        "The 95% intervals overlap: on this many test problems the difference may be "
        "sampling noise."
    )
