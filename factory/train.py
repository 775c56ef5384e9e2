"""Stage 5, train: one student on one dataset config with TRL's `SFTTrainer`.

Rows are conversational prompt-completion pairs, so TRL formats them with the student's own chat
template and puts the loss on the completion only. LoRA through PEFT by default (`train.lora`,
`null` for full fine-tuning); every `train.sft` option passes through to `SFTConfig`. TRL loads
the model itself (`SFTConfig.model_init_kwargs`), after the distributed state exists, so DeepSpeed
ZeRO-3 and FSDP load it sharded. Training is seeded, padding-free, checkpointed, and resumes from
its last checkpoint. A run folder `out` ends as:

    adapter/               the adapter (or full model) as the Trainer saved it, never touched after
    training_config.json   the SFTConfig and LoraConfig actually used, and the library versions
    training_metrics.json  written last, atomically: the run is finished
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from factory.files import write_json
from factory.models import model_problem
from factory.paths import TRAINING_CONFIG, TRAINING_METRICS
from factory.precision import device, training_options
from factory.recipe import Recipe, RecipeError, Student, plan_configs
from factory.training_record import (
    TrainResult,
    finished,
    run_metrics,
    segments_callback,
    training_settings,
)

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
    # TRL loads the student (ZeRO-3/FSDP aware); row-by-row SDPA for padding-free batches
    "model_init_kwargs": {"dtype": "float32", "attn_implementation": "sdpa_rows"},
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


def sft_options(recipe: Recipe, seed: int | None = None) -> dict[str, Any]:
    """SFTConfig keyword arguments: our CPU-friendly defaults, the recipe's `train.sft`, and the
    seed (default: the recipe's first)."""
    # TRL defaults to bf16; we use it where the hardware runs it natively (GPUs that support it,
    # CPUs with AVX512-BF16 or AMX), as autocast over float32 weights.
    defaults = {
        **DEFAULT_SFT,
        **training_options(recipe.train.sft),
        "dataloader_pin_memory": device() == "cuda",
    }
    if recipe.train.lora is None:
        defaults["learning_rate"] = DEFAULT_FULL_FT_LR
    seed = recipe.train.seeds[0] if seed is None else seed
    options = {**defaults, **recipe.train.sft, "seed": seed, "data_seed": seed}
    # Tokens of the steps actually run, kept in the trainer state across resumes. Padding-free
    # batches have neither padding nor an attention mask, so every token counts.
    tokens = "all" if options["padding_free"] else "non_padding"
    options.setdefault("include_num_input_tokens_seen", tokens)
    return options


def lora_options(recipe: Recipe) -> dict[str, Any] | None:
    """LoraConfig keyword arguments, or None for full fine-tuning."""
    return None if recipe.train.lora is None else {**DEFAULT_LORA, **recipe.train.lora}


def check_training(recipe: Recipe) -> None:
    """What the schema cannot know: `train.sft` and `train.lora` keys are real `SFTConfig` and
    `LoraConfig` options, `train.configs` are configs the recipe builds, and every student model
    can be loaded here."""
    import dataclasses
    import difflib

    from peft import LoraConfig
    from trl import SFTConfig

    for section, cls in (("sft", SFTConfig), ("lora", LoraConfig)):
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        for key in getattr(recipe.train, section) or {}:
            where = recipe.where(("train", section, key))
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
            where = recipe.where(("train", "configs", i))
            raise RecipeError(
                f"{where}: train.configs[{i}]: {config!r} is not built by this "
                f"recipe (configs: {', '.join(built)})"
            )
    for i, student in enumerate(recipe.students):
        problem = model_problem(student.model)
        if problem:
            where = recipe.where(("students", i, "model"))
            raise RecipeError(f"{where}: students[{i}].model: {problem}")


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
    A finished run is not trained again; an interrupted one resumes from its checkpoint. Every
    process of an `accelerate launch` calls this and gets the same result."""
    done = finished(out)
    if done:
        log.info("%s on %s: already trained, skipping", student.model, config)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # left by a kill before cleanup
        return done
    from peft.helpers import disable_input_dtype_casting

    trainer = sft_trainer(recipe, student, config, dataset_dir, out, home, seed)
    checkpoint = _resume_point(trainer, out / "checkpoints")
    # Under autocast, PEFT's cast of each LoRA input to the adapter's float32 is undone by the
    # autocast of its matmul: a copy of every activation, twice, for nothing (~5% of a CPU step).
    autocast = trainer.args.bf16 or trainer.args.fp16
    with disable_input_dtype_casting(trainer.model, active=autocast):
        output = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(out / "adapter"))  # on every rank: ZeRO-3 and FSDP gather the weights
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        requested = {
            "sft": sorted(sft_options(recipe, seed)),
            "lora": sorted(lora_options(recipe) or {}),
        }
        write_json(out / TRAINING_CONFIG, training_settings(trainer, student, requested))
        write_json(out / TRAINING_METRICS, run_metrics(trainer, output, config, checkpoint))
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    trainer.accelerator.wait_for_everyone()  # no rank returns before the metrics are complete
    return finished(out)


def _resume_point(trainer, folder: Path) -> str | None:
    """The checkpoint every process resumes from, once the main one removed those cut short."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > trainer.args.world_size:  # each process would train alone, on the same files
        raise RuntimeError(
            f"{launched} processes were launched but training is not distributed: "
            "without a GPU set ACCELERATE_USE_CPU=true (`cot-factory train --accelerate` does)"
        )
    if trainer.accelerator.is_main_process:
        _last_checkpoint(folder)
    trainer.accelerator.wait_for_everyone()
    checkpoint = _last_checkpoint(folder)
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    return checkpoint


def sft_trainer(
    recipe: Recipe,
    student: Student,
    config: str,
    dataset_dir: Path,
    out: Path,
    home: Path,
    seed: int | None = None,
):
    """The `SFTTrainer` for one run, checkpointing into `out/checkpoints`: TRL creates the model
    from its path with `model_init_kwargs`, seeds it and wraps it with the LoRA adapter."""
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from factory.cpu_head import use_lean_cpu_head
    from factory.models import resolve_model
    from factory.shards import load_config

    register_row_attention()
    use_lean_cpu_head()
    model_path = resolve_model(student.model, home)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.chat_template is None:
        log.warning("%s has no chat template: using cot-factory's plain one", student.model)
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = load_config(dataset_dir, config).select_columns(["prompt", "completion"])
    lora = lora_options(recipe)
    return SFTTrainer(
        model=model_path,
        args=SFTConfig(output_dir=str(out / "checkpoints"), **sft_options(recipe, seed)),
        train_dataset=rows,
        processing_class=tokenizer,
        peft_config=LoraConfig(**lora) if lora else None,
        callbacks=[segments_callback()],
    )


def register_row_attention() -> None:
    """Register `sdpa_rows` with transformers: SDPA with `is_causal` on each row of a
    padding-free batch (the `cu_seq_lens_q` TRL's collator passes down), where plain `sdpa`
    attends over the whole concatenated batch with a block-diagonal mask and throws most of that
    work away. On a CPU the rows run in float32 outside autocast: its bf16 flash attention
    takes twice as long as float32 forward and backward at SVAMP lengths (the output keeps the
    value's dtype). Any other call is plain `sdpa`, masks included."""
    import contextlib
    import itertools

    import torch
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import sdpa_mask

    def sdpa_rows(module, query, key, value, attention_mask, cu_seq_lens_q=None, **kwargs):
        if cu_seq_lens_q is None or query.shape[0] != 1:
            return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
        on_cpu, dtype = query.device.type == "cpu", value.dtype
        if on_cpu:
            query, key, value = query.float(), key.float(), value.float()
        with torch.autocast("cpu", enabled=False) if on_cpu else contextlib.nullcontext():
            rows = [
                sdpa_attention_forward(
                    module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None, **kwargs
                )[0]
                for a, b in itertools.pairwise(cu_seq_lens_q.tolist())
            ]
        return torch.cat(rows, dim=1).to(dtype), None

    AttentionInterface.register("sdpa_rows", sdpa_rows)
    AttentionMaskInterface.register("sdpa_rows", sdpa_mask)


def _last_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint. The Trainer writes `trainer_state.json` last, so a
    checkpoint without it (or with it torn) was cut short and is removed, not resumed from."""
    if not folder.is_dir():
        return None
    complete = []
    for checkpoint in folder.glob("checkpoint-*"):
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
            complete.append(checkpoint)
        except (OSError, ValueError):
            log.warning("removing the incomplete checkpoint %s", checkpoint)
            shutil.rmtree(checkpoint, ignore_errors=True)
    newest = max(complete, key=lambda p: int(p.name.split("-")[1]), default=None)
    return str(newest) if newest else None
