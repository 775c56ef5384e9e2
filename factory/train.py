"""Stage 5, train: one student on one dataset config with TRL's `SFTTrainer`.

Rows are conversational prompt-completion pairs, so TRL formats them with the student's own chat
template and puts the loss on the completion only. LoRA through PEFT by default (`train.lora`,
`null` for full fine-tuning); every `train.sft` option passes through to `SFTConfig`. Training is
seeded, padding-free (no compute spent on pad tokens), checkpointed, and resumes from its last
checkpoint when interrupted.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.recipe import Recipe, RecipeError, Student, plan_configs
from factory.recipe.where import key_lines, locate

log = logging.getLogger(__name__)

# The paper-scale reference point on CPU (design note): LoRA r=16 on all linear layers,
# lr 3e-4 cosine, 2 epochs, batch 8.
DEFAULT_SFT: dict[str, Any] = {
    "num_train_epochs": 2,
    "learning_rate": 3e-4,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.03,
    "per_device_train_batch_size": 8,
    "padding_free": True,  # no compute on pad tokens; rows are not truncated (TRL needs
    "max_length": None,  # max_length=None with padding-free and no packing)
    "activation_checkpointing": False,  # TRL turns it on: ~20% slower, and small students fit
    "logging_steps": 5,
    "save_strategy": "steps",
    "save_steps": 50,
    "save_total_limit": 1,
    "report_to": "none",
}
DEFAULT_FULL_FT_LR = 2e-5
DEFAULT_LORA: dict[str, Any] = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": "all-linear",
    "task_type": "CAUSAL_LM",
}
RESERVED_SFT = {  # SFTConfig options cot-factory sets itself, and why
    "output_dir": "set by cot-factory (the run folder)",
    "seed": "set by cot-factory: list seeds in train.seeds",
    "data_seed": "set by cot-factory: list seeds in train.seeds",
    "completion_only_loss": "set by cot-factory (always on the completion)",
    "assistant_only_loss": "set by cot-factory (always on the completion)",
    "dataset_text_field": "set by cot-factory (rows are prompt-completion)",
}
# A plain template for base models that ship none: the adapter saves it, so evaluation and the
# demo format prompts exactly as training did.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
DONE = "training_metrics.json"


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path
    metrics: dict[str, Any]


def sft_options(recipe: Recipe, seed: int | None = None) -> dict[str, Any]:
    """SFTConfig keyword arguments: our CPU-friendly defaults, the recipe's `train.sft`, and the
    seed (default: the recipe's first)."""
    import torch

    # TRL defaults to bf16, which CPUs and older GPUs refuse.
    gpu = torch.cuda.is_available()
    defaults = {
        **DEFAULT_SFT,
        "bf16": gpu and torch.cuda.is_bf16_supported(),
        "dataloader_pin_memory": gpu,
    }
    if recipe.train.lora is None:
        defaults["learning_rate"] = DEFAULT_FULL_FT_LR
    seed = recipe.train.seeds[0] if seed is None else seed
    return {**defaults, **recipe.train.sft, "seed": seed, "data_seed": seed}


def lora_options(recipe: Recipe) -> dict[str, Any] | None:
    """LoraConfig keyword arguments, or None for full fine-tuning."""
    return None if recipe.train.lora is None else {**DEFAULT_LORA, **recipe.train.lora}


def check_training(recipe: Recipe) -> None:
    """What the schema cannot know: `train.sft` and `train.lora` keys are real `SFTConfig` and
    `LoraConfig` options, and `train.configs` are configs the recipe builds."""
    import dataclasses
    import difflib

    from peft import LoraConfig
    from trl import SFTConfig

    lines = key_lines(recipe.path.read_text()) if recipe.path else {}
    for section, cls in (("sft", SFTConfig), ("lora", LoraConfig)):
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        for key in getattr(recipe.train, section) or {}:
            where = locate(recipe.path, lines, ("train", section, key))
            if key in RESERVED_SFT:
                raise RecipeError(f"{where}: train.{section}.{key}: {RESERVED_SFT[key]}")
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise RecipeError(
                    f"{where}: train.{section}.{key}: not a {cls.__name__} option{hint}"
                )
    built = [plan.name for plan in plan_configs(recipe)]
    for i, config in enumerate(recipe.train.configs or []):
        if config not in built:
            where = locate(recipe.path, lines, ("train", "configs", i))
            raise RecipeError(
                f"{where}: train.configs[{i}]: {config!r} is not built by this "
                f"recipe (configs: {', '.join(built)})"
            )


def train_student(
    recipe: Recipe,
    student: Student,
    config: str,
    dataset_dir: Path,
    out: Path,
    home: Path,
    seed: int | None = None,
) -> TrainResult:
    """Train `student` on `config` of the built dataset; the adapter lands in `out/adapter`.
    A finished run is not trained again; an interrupted one resumes from its checkpoint."""
    adapter_dir = out / "adapter"
    if (out / DONE).is_file():
        log.info("%s on %s: already trained, skipping", student.model, config)
        return TrainResult(adapter_dir, json.loads((out / DONE).read_text()))
    trainer = _trainer(recipe, student, config, dataset_dir, out, home, seed)
    checkpoint = _last_checkpoint(out / "checkpoints")
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=checkpoint)
    if trainer.accelerator.is_main_process:
        trainer.save_model(str(adapter_dir))
        metrics = _metrics(trainer, output, time.perf_counter() - start, config)
        metrics["resumed_from"] = Path(checkpoint).name if checkpoint else None
        (out / DONE).write_text(json.dumps(metrics, indent=2) + "\n")
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        return TrainResult(adapter_dir, metrics)
    return TrainResult(adapter_dir, {})


def _trainer(
    recipe: Recipe,
    student: Student,
    config: str,
    dataset_dir: Path,
    out: Path,
    home: Path,
    seed: int | None,
):
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from factory.build import load_config
    from factory.models import resolve_model

    model_path = resolve_model(student.model, home)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.chat_template is None:
        log.warning("%s has no chat template: using cot-factory's plain one", student.model)
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = load_config(dataset_dir, config)
    rows = rows.select_columns(["prompt", "completion"])
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    lora = lora_options(recipe)
    return SFTTrainer(
        model=model,
        args=SFTConfig(output_dir=str(out / "checkpoints"), **sft_options(recipe, seed)),
        train_dataset=rows,
        processing_class=tokenizer,
        peft_config=LoraConfig(**lora) if lora else None,
    )


def _last_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint. The Trainer writes `trainer_state.json` last, so a
    checkpoint without it was cut short (killed mid-save) and is removed, not resumed from."""
    if not folder.is_dir():
        return None
    complete = []
    for checkpoint in folder.glob("checkpoint-*"):
        if (checkpoint / "trainer_state.json").is_file():
            complete.append(checkpoint)
        else:
            log.warning("removing the incomplete checkpoint %s", checkpoint)
            shutil.rmtree(checkpoint)
    newest = max(complete, key=lambda p: int(p.name.split("-")[1]), default=None)
    return str(newest) if newest else None


def _metrics(trainer, output, seconds: float, config: str) -> dict[str, Any]:
    history = trainer.state.log_history
    losses = [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h]
    # Real (non-pad) tokens seen: every tokenized row once per epoch.
    per_epoch = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    tokens = per_epoch * trainer.state.epoch
    return {
        "config": config,
        "rows": len(trainer.train_dataset),
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_loss": output.training_loss,
        "loss_history": losses,
        "train_tokens": int(tokens),
        "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "seconds": round(seconds, 1),
    }
