"""Stage 7, release: the folders that get published, built next to the outputs they carry.

An adapter's release is a copy of the trained adapter with its model card, the recipe, the
evaluation and `cot_factory.json` (what `reproduce` needs); the training output itself is never
touched. A dataset's results release is the built dataset folder with the report's Results
section in its card and the plots beside it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from factory import __version__
from factory.cards import render_model_card
from factory.files import fresh_folder, replace_folder, write_json
from factory.models import hub_id_for, origin_note
from factory.paths import (
    ADAPTER_META,
    EVAL_METRICS,
    PREDICTIONS,
    RECIPE_COPY,
    REPORT,
    TRAINING_CONFIG,
)
from factory.prompts import describe
from factory.recipe import Recipe, student_name

UNPUBLISHED = shutil.ignore_patterns("training_args.bin")
RESULTS_START, RESULTS_END = "<!-- cot-factory results -->", "<!-- /cot-factory results -->"


def release_adapter(recipe: Recipe, student, config: str, out: Path, **facts) -> Path:
    """Write the publishable folder of one trained student at `out`. `facts`: `trained` (the
    TrainResult), `evaluation` (its eval folder), `base` and `distilled` metrics, `stats` (the
    config's build statistics), `seed`, `repo_id`, `dataset_revision`, `example_question`,
    `target` and `home`."""
    trained, evaluation = facts["trained"], Path(facts["evaluation"])
    staging = fresh_folder(out.with_name(out.name + ".tmp"))
    # training_args.bin is a pickle of this machine's TrainingArguments: its JSON record,
    # training_config.json, travels instead.
    shutil.copytree(trained.adapter_dir, staging, dirs_exist_ok=True, ignore=UNPUBLISHED)
    for name in (EVAL_METRICS, PREDICTIONS):
        shutil.copyfile(evaluation / name, staging / name)
    write_json(staging / TRAINING_CONFIG, trained.settings)
    base_model = hub_id_for(student.model) or student.model
    _name_base_by_hub_id(staging / "adapter_config.json", base_model)
    if recipe.path:
        shutil.copyfile(recipe.path, staging / RECIPE_COPY)
    write_json(staging / ADAPTER_META, _meta(recipe, student, config, facts))
    card = render_model_card(
        recipe,
        student=student_name(student),
        base_model=base_model,
        base_model_note=origin_note(student.model, facts["home"]),
        config=config,
        supervision=_supervision(config, facts["stats"]),
        teacher=facts["stats"]["teacher"],
        repo_id=facts["repo_id"],
        dataset_revision=facts["dataset_revision"],
        base=facts["base"],
        distilled=facts["distilled"],
        metrics=trained.metrics,
        **chosen_settings(trained.settings),
        example_question=facts["example_question"],
        reproduce_command=_reproduce_command(facts["repo_id"], facts["target"]),
    )
    card.save(staging / "README.md")
    replace_folder(staging, out)
    return out


def chosen_settings(settings: dict) -> dict:
    """The SFTConfig and LoraConfig options cot-factory and the recipe set, with the values
    training actually used (as the libraries resolved them)."""
    requested, lora = settings["requested"], settings["lora"]
    sft = {k: settings["sft"][k] for k in requested["sft"] if k in settings["sft"]}
    sft.pop("report_to", None)
    lora = lora and {k: lora[k] for k in requested["lora"] if k in lora}
    return {"sft": sft, "lora": lora}


def _name_base_by_hub_id(adapter_config: Path, base_model: str) -> None:
    """Readers of the card load the base by its Hub id, not by this machine's path."""
    if adapter_config.is_file():
        settings = json.loads(adapter_config.read_text())
        settings["base_model_name_or_path"] = base_model
        adapter_config.write_text(json.dumps(settings, indent=2) + "\n")


def _meta(recipe: Recipe, student, config: str, facts: dict) -> dict:
    return {
        "student": student_name(student),
        "student_model": student.model,
        "config": config,
        "seed": facts["seed"],
        "dataset_repo": recipe.dataset.repo_id,
        "dataset_revision": facts["dataset_revision"],
        "recipe": recipe.name,
        "recipe_hash": recipe.hash,
        "tag": recipe.tag,
        "cot_factory_version": __version__,
    }


def _reproduce_command(repo_id: str, target: str) -> str:
    return f"cot-factory reproduce {repo_id}" + (" --target hf" if target == "hf" else "")


def _supervision(config: str, stats: dict) -> str:
    if stats["format"]:
        shape = describe(stats["format"], stats["level"]).split(": ")[0]
        return f"chain-of-thought rationales by `{stats['teacher']}` ({shape})"
    if config == "answer-only":
        return "the gold answers alone, with no rationale"
    return "the source's own reference rationales"


def release_results(dataset: Path, report: Path, out: Path, dataset_commit: str) -> Path:
    """The dataset folder with the report's Results section in its card (replacing an earlier
    one) and the plots in `results/`; the section cites the dataset commit it describes."""
    from huggingface_hub import DatasetCard

    staging = fresh_folder(out.with_name(out.name + ".tmp"))
    shutil.copytree(dataset, staging, dirs_exist_ok=True)
    for png in report.glob("*.png"):
        (staging / "results").mkdir(exist_ok=True)
        shutil.copyfile(png, staging / "results" / png.name)
    body = (report / REPORT).read_text().split("\n", 1)[1].replace("](", "](results/")
    cited = f"Measured on the rows of commit `{dataset_commit}` of this dataset.\n"
    section = f"{RESULTS_START}\n## Results\n\n{cited}{body.strip()}\n{RESULTS_END}"
    card = DatasetCard.load(staging / "README.md")
    text = card.text
    if RESULTS_START in text:
        head, rest = text.split(RESULTS_START, 1)
        text = head + section + rest.split(RESULTS_END, 1)[1]
    else:
        text = text.replace("\n## Usage", f"\n{section}\n\n## Usage", 1)
    card.text = text
    card.save(staging / "README.md")
    replace_folder(staging, out)
    return out
