"""What a training run leaves in its folder, and reading it back: the settings the libraries
resolved (`training_config.json`), the whole run's metrics (`training_metrics.json`, written
last), and the segments clock that keeps them honest across resumes."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from factory.paths import TRAINING_CONFIG, TRAINING_METRICS

log = logging.getLogger(__name__)
SEGMENTS = "Segments"  # the callback's name in `trainer_state.json`


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path
    metrics: dict[str, Any]  # training_metrics.json
    settings: dict[str, Any]  # training_config.json


def finished(out: Path) -> TrainResult | None:
    """The result of a finished run in `out`, or None. A torn metrics or settings file (this
    version writes both atomically) counts as unfinished: the run is rebuilt from its final
    checkpoint where there is one, and trained again where there is none."""
    try:
        metrics = json.loads((out / TRAINING_METRICS).read_text())
        settings = json.loads((out / TRAINING_CONFIG).read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        log.warning("%s holds a torn file: the run counts as unfinished", out)
        return None
    return TrainResult(out / "adapter", metrics, settings)


def segments_callback():
    """Records the segments of a run (its first `train()` call, then each resume): the step each
    started at and the seconds it trained, saved with every checkpoint's trainer state. The time
    after a segment's last checkpoint is lost with its steps, which the next segment redoes."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState

    class Segments(TrainerCallback, ExportableState):
        def __init__(self):
            self.segments: list[dict[str, float]] = []
            self.started: float | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            saved = state.stateful_callbacks.get(SEGMENTS) or {}
            self.segments = [dict(s) for s in saved.get("attributes", {}).get("segments", [])]
            self.segments.append({"start_step": state.global_step, "seconds": 0.0})
            self.started = time.perf_counter()
            state.stateful_callbacks.setdefault(SEGMENTS, self.state())  # an older checkpoint

        def state(self) -> dict:
            if self.started is not None:
                self.segments[-1]["seconds"] = round(time.perf_counter() - self.started, 3)
            return {"args": {}, "attributes": {"segments": self.segments}}

    return Segments()


def training_settings(trainer, student, requested: dict) -> dict[str, Any]:
    """What trained the adapter, as the libraries resolved it: the full SFTConfig, the LoraConfig
    PEFT applied (target modules resolved), the keys cot-factory and the recipe set
    (`requested`), the distribution, and the library versions."""
    import accelerate
    import peft
    import torch
    import transformers
    import trl

    model = trainer.accelerator.unwrap_model(trainer.model)
    lora = getattr(model, "peft_config", {}).get("default")
    sft = trainer.args.to_dict()  # masks every `*_token`: only the Hub token is a secret
    sft.update(eos_token=trainer.args.eos_token, pad_token=trainer.args.pad_token)
    settings = {
        "model": student.model,
        "model_path": model.config.name_or_path,
        "sft": sft,
        "lora": lora.to_dict() if lora else None,
        "requested": requested,
        "precision": precision_record(trainer, model),
        "distributed_type": trainer.accelerator.distributed_type,
        "world_size": trainer.args.world_size,
        "versions": {
            m.__name__: m.__version__ for m in (torch, transformers, trl, peft, accelerate)
        },
    }
    return json.loads(json.dumps(settings, default=_plain))


def precision_record(trainer, model) -> dict[str, Any]:
    """How training computed (`bf16 autocast`, `fp16 autocast` or `float32`), the dtypes of the
    base and trained weights, and the hardware the choice was made from."""
    from factory.precision import hardware, training_precision

    trained = next((p.dtype for p in model.parameters() if p.requires_grad), model.dtype)
    return {
        "compute": training_precision(trainer.args),
        "base_weights": str(model.dtype).removeprefix("torch."),
        "trained_weights": str(trained).removeprefix("torch."),
        **hardware(),
    }


def _plain(value: Any) -> Any:
    """What JSON cannot hold: enums as their values, sets sorted, the rest (dtypes) as text."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def run_metrics(trainer, output, config: str, checkpoint: str | None) -> dict[str, Any]:
    """The whole run's metrics, resumes included: loss and tokens from the trainer state, the
    seconds of every segment."""
    from factory.precision import training_precision

    state = trainer.state
    clock = next(c for c in trainer.callback_handler.callbacks if type(c).__name__ == SEGMENTS)
    segments = clock.state()["attributes"]["segments"]
    seconds = sum(s["seconds"] for s in segments)
    counted = trainer.args.include_num_input_tokens_seen != "no"
    tokens = state.num_input_tokens_seen if counted else None
    return {
        "config": config,
        "precision": training_precision(trainer.args),
        "rows": len(trainer.train_dataset),
        "steps": state.global_step,
        "epochs": state.epoch,
        "train_loss": _run_loss(state.log_history, segments, output),
        "loss_history": [
            {"step": h["step"], "loss": h["loss"]} for h in state.log_history if "loss" in h
        ],
        "train_tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1) if tokens and seconds else None,
        "seconds": round(seconds, 1),
        "segments": segments,
        "resumes": len(segments) - 1,
        "resumed_from": Path(checkpoint).name if checkpoint else None,
    }


def _run_loss(history: list[dict], segments: list[dict], output) -> float | None:
    """Mean loss per step over the run. The last segment's mean is the Trainer's own (it covers
    the steps after its last log too); before it, each logged loss is the mean of the steps since
    the previous log, or since the resume in between."""
    starts = [s["start_step"] for s in segments]
    total = steps = previous = 0
    for entry in history:
        if "loss" not in entry or entry["step"] > starts[-1]:
            continue
        begin = max([previous, *(s for s in starts if s < entry["step"])])
        total += entry["loss"] * (entry["step"] - begin)
        steps += entry["step"] - begin
        previous = entry["step"]
    ran = output.global_step - starts[-1]
    total += output.training_loss * ran
    steps += ran
    return total / steps if steps else None
