"""Precision per device: what this machine runs natively, what training and evaluation choose,
and that training really autocasts to bf16 while every weight stays float32."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_train import toy_recipe
from trl import SFTConfig

from factory import precision
from factory.recipe import load_recipe
from factory.run import build_dataset
from factory.train import sft_options, sft_trainer, train_student

native = pytest.mark.skipif(not precision.bf16_native(), reason="bf16 is not native here")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")
def test_cpu_bf16_flags_agree_with_the_kernel():
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    assert precision.cpu_bf16_flags() == [f for f in precision.CPU_BF16_FLAGS if f in flags]
    found = precision.hardware()
    if found["device"] == "cpu":
        assert found["bf16_native"] == bool(found["cpu_bf16_flags"])


def test_training_uses_bf16_where_native_unless_the_recipe_says_otherwise():
    on_cpu, bf16 = precision.device() == "cpu", precision.bf16_native()
    assert precision.training_options({}) == {
        "bf16": bf16,
        **({"use_cpu": True} if bf16 and on_cpu else {}),
    }
    assert precision.training_options({"bf16": False}) == {}
    assert precision.training_options({"fp16": True}) == {}, "fp16 and bf16 exclude each other"
    assert precision.training_options({"bf16": True}) == ({"use_cpu": True} if on_cpu else {})


def test_evaluation_dtype_choices():
    assert precision.eval_dtype("float32") == "float32"
    assert precision.eval_dtype("bfloat16") == "bfloat16"
    auto = precision.AUTO_EVAL_DTYPE if precision.bf16_native() else "float32"
    assert precision.eval_dtype() == precision.eval_dtype("auto") == auto
    with pytest.raises(ValueError, match="eval.dtype must be one of auto, float32, bfloat16"):
        precision.eval_dtype("float16")


def test_eval_dtype_is_a_checked_recipe_key_left_out_of_the_hash_at_its_default(
    tmp_path, tiny_model_dir
):
    from factory.recipe import RecipeError

    path = toy_recipe(tmp_path, tiny_model_dir)
    default = load_recipe(path)
    recipe = yaml.safe_load(path.read_text())
    for value, hashed in (("auto", False), ("bfloat16", True)):
        recipe["eval"]["dtype"] = value
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        loaded = load_recipe(path)
        assert loaded.eval.dtype == value and (loaded.hash != default.hash) == hashed
    recipe["eval"]["dtype"] = "float16"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    with pytest.raises(RecipeError, match=r"eval\.dtype"):
        load_recipe(path)


def dtypes_seen(trainer) -> dict[str, set]:
    """Hooks recording the output dtype of one base linear layer and of its LoRA A."""
    seen: dict[str, set] = {"base": set(), "lora": set()}
    layer = trainer.model.base_model.model.model.layers[0].self_attn.q_proj
    layer.base_layer.register_forward_hook(lambda m, i, o: seen["base"].add(o.dtype))
    layer.lora_A["default"].register_forward_hook(lambda m, i, o: seen["lora"].add(o.dtype))
    return seen


@pytest.fixture
def toy(tmp_path, tiny_model_dir, home):
    def make(sft: dict):
        path = toy_recipe(tmp_path, tiny_model_dir, sft={"max_steps": 2, **sft}, name="p")
        recipe = load_recipe(path)
        return recipe, build_dataset(recipe, home).run.dataset

    return make


@pytest.mark.slow
@native
def test_training_autocasts_to_bf16_and_keeps_every_weight_float32(toy, tmp_path, home):
    recipe, dataset = toy({})
    args = SFTConfig(output_dir=str(tmp_path / "x"), **sft_options(recipe))
    assert args.bf16 and args.mixed_precision == "bf16"
    student = recipe.students[0]
    trainer = sft_trainer(recipe, student, "answer-only", dataset, tmp_path / "probe", home)
    seen = dtypes_seen(trainer)
    trainer.train()
    assert seen == {"base": {torch.bfloat16}, "lora": {torch.bfloat16}}, "matmuls under autocast"
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}

    result = train_student(recipe, student, "answer-only", dataset, tmp_path / "run", home)
    saved = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert saved and {t.dtype for t in saved.values()} == {torch.float32}
    assert result.metrics["precision"] == "bf16 autocast"
    settings = json.loads((tmp_path / "run" / "training_config.json").read_text())
    assert settings["precision"] == {
        "compute": "bf16 autocast",
        "base_weights": "float32",
        "trained_weights": "float32",
        **precision.hardware(),
    }
    assert settings["sft"]["bf16"] and settings["sft"]["use_cpu"] == (precision.device() == "cpu")


@pytest.mark.slow
def test_a_recipe_can_train_in_float32(toy, tmp_path, home):
    recipe, dataset = toy({"bf16": False})
    student = recipe.students[0]
    trainer = sft_trainer(recipe, student, "answer-only", dataset, tmp_path / "probe", home)
    assert trainer.args.mixed_precision == "no"
    seen = dtypes_seen(trainer)
    trainer.train()
    assert seen == {"base": {torch.float32}, "lora": {torch.float32}}
    result = train_student(recipe, student, "answer-only", dataset, tmp_path / "run", home)
    assert result.metrics["precision"] == "float32"
    assert result.settings["precision"]["compute"] == "float32"
