"""Training and evaluating students with the real TRL, PEFT and transformers on a tiny model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from factory.cpu_head import use_lean_cpu_head
from factory.evaluate import evaluate, load_student
from factory.recipe import RecipeError, load_recipe
from factory.run import build_dataset
from factory.sources import Problem
from factory.stats import wilson_interval
from factory.train import (
    check_training,
    register_row_attention,
    sft_trainer,
    train_student,
)

pytestmark = pytest.mark.slow  # starts servers or trains models

ROOT = Path(__file__).resolve().parents[1]
LINEAR = [f"self_attn.{m}_proj" for m in "qkvo"] + [f"mlp.{m}_proj" for m in ("gate", "up", "down")]
FAST_SFT = {
    "learning_rate": 1e-2,
    "num_train_epochs": 10,
    "per_device_train_batch_size": 4,
    "logging_steps": 1,
}


def toy_recipe(
    tmp_path: Path,
    model_dir: Path,
    *,
    lora: dict | None = None,
    sft: dict | None = None,
    name: str = "toy",
) -> Path:
    recipe = {
        "description": "Single-digit sums, answer only.",
        "source": {
            "kind": "gym",
            "dataset": "chain_sum",
            "train": 16,
            "test": 8,
            "seed": 0,
            "options": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        },
        "cot": {"answer_only": True},
        "dataset": {"repo_id": "local/toy", "license": "mit"},
        "students": [{"model": str(model_dir), "name": "tiny"}],
        "train": {
            "lora": {"r": 8, "lora_alpha": 16} if lora is None else lora,
            "sft": {**FAST_SFT, **(sft or {})},
        },
        "eval": {"max_new_tokens": 8, "batch_size": 8},
    }
    if lora == "full":
        recipe["train"]["lora"] = None
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture
def toy(tmp_path, tiny_model_dir, home):
    recipe = load_recipe(toy_recipe(tmp_path, tiny_model_dir))
    return recipe, build_dataset(recipe, home), home


def train(recipe, built, home, out: Path):
    return train_student(recipe, recipe.students[0], "answer-only", built.run.dataset, out, home)


def test_lora_training_logs_falling_loss_and_records_its_settings(toy, tmp_path, tiny_model_dir):
    recipe, built, home = toy
    result = train(recipe, built, home, tmp_path / "run")
    losses = [point["loss"] for point in result.metrics["loss_history"]]
    assert len(losses) == result.metrics["steps"] == 40
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.5, losses
    assert result.metrics["train_loss"] == pytest.approx(sum(losses) / 40)
    assert result.metrics["train_tokens"] > 0 and result.metrics["tokens_per_second"] > 0
    assert result.metrics["resumes"] == 0 and result.metrics["segments"][0]["start_step"] == 0

    adapter = load_file(result.adapter_dir / "adapter_model.safetensors")
    lora_b = [t for name, t in adapter.items() if "lora_B" in name]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b), "LoRA B starts at zero and moved"
    assert not any("lora" not in name for name in adapter), "only adapter weights are saved"
    config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16 and config["peft_type"] == "LORA"

    import peft
    import transformers
    import trl
    from trl import SFTConfig

    settings = json.loads((tmp_path / "run" / "training_config.json").read_text())
    assert settings == result.settings
    sft, lora = settings["sft"], settings["lora"]
    assert (sft["learning_rate"], sft["num_train_epochs"], sft["seed"]) == (1e-2, 10, 0)
    assert sft["lr_scheduler_type"] == "cosine"
    assert sft["model_init_kwargs"] == {"dtype": "float32", "attn_implementation": "sdpa_rows"}
    assert settings["precision"]["compute"] == result.metrics["precision"]
    assert settings["precision"]["base_weights"] == settings["precision"]["trained_weights"]
    assert sft["output_dir"] == str(tmp_path / "run" / "checkpoints")
    assert sft["hub_token"] == "<HUB_TOKEN>", "the one secret stays out"
    rebuilt = SFTConfig(**{**sft, "hub_token": None})
    tokens = {"eos_token": rebuilt.eos_token, "pad_token": rebuilt.pad_token}
    assert {**rebuilt.to_dict(), **tokens} == sft, "the whole SFTConfig, as TRL resolved it"
    linear = {f"model.layers.{i}.{m}" for i in range(2) for m in LINEAR}
    assert (lora["r"], lora["lora_alpha"], lora["lora_dropout"]) == (8, 16, 0.05)
    assert set(lora["target_modules"]) == linear, "all-linear as PEFT resolved it"
    assert settings["model"] == settings["model_path"] == str(tiny_model_dir)
    assert settings["world_size"] == 1 and settings["distributed_type"] == "NO"
    versions = {"torch": torch, "transformers": transformers, "trl": trl, "peft": peft}
    assert all(settings["versions"][name] == m.__version__ for name, m in versions.items())


def test_training_changes_the_lora_weights_and_not_the_base_weights(toy, tmp_path, tiny_model_dir):
    recipe, built, home = toy
    student = recipe.students[0]
    trainer = sft_trainer(recipe, student, "answer-only", built.run.dataset, tmp_path / "run", home)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    on_disk = load_file(tiny_model_dir / "model.safetensors")
    base = [name for name in before if "lora_" not in name]
    assert base and all(torch.equal(before[name], on_disk[_disk_name(name)]) for name in base), (
        "the student is loaded from its folder in fp32"
    )
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert all(torch.equal(before[name], after[name]) for name in base), "base weights changed"
    lora = [name for name in before if "lora_" in name]
    assert len(lora) == 2 * 2 * len(LINEAR)
    assert all(not torch.equal(before[name], after[name]) for name in lora), "LoRA did not move"


def _disk_name(name: str) -> str:
    """`base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight` as saved on disk."""
    return name.removeprefix("base_model.model.").replace(".base_layer", "")


def test_the_cpu_lm_head_scores_the_completion_alone_with_the_same_loss_and_gradients(
    tiny_model_dir, monkeypatch
):
    """TRL's fused head, as training calls it (PEFT LoRA, autocast, a padding-free batch whose
    prompts are masked): cot-factory's CPU head, which projects only the labelled positions in
    one pass, gives the loss, the entropy, the top-1 and every adapter gradient that TRL's own
    CPU path, projecting every position, gives; and it does project fewer."""
    import trl.trainer.utils as trl_utils
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    import factory.cpu_head as cpu_head

    rows = [
        {"input_ids": list(range(5, 5 + n)), "labels": [-100] * p + list(range(5 + p, 5 + n))}
        for n, p in ((9, 6), (4, 3), (12, 5))
    ]
    collate = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    batch = collate(rows)
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert 0 < labelled < batch["input_ids"].shape[1] - 1, "prompts are masked, completions not"
    projected, trl_head, projection = [], trl_utils._ChunkedLogProbFunction, cpu_head.block_logits
    trl_head = getattr(trl_head, "trl_function", None) or trl_head

    class Counting(trl_head):
        @staticmethod
        def forward(ctx, hidden, *args):
            projected.append(("trl", hidden.shape[0]))
            return trl_head.forward(ctx, hidden, *args)

    def counting_projection(hidden, *args):
        projected.append(("lean", hidden.shape[0]))
        return projection(hidden, *args)

    monkeypatch.setattr(cpu_head, "block_logits", counting_projection)
    monkeypatch.setattr(cpu_head.CpuFirstLogProbs, "trl_function", trl_head)
    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counting)
    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)  # as TRL is on a CPU
    results = []
    for lean, autocast in ((False, False), (False, True), (True, True)):
        if lean:
            use_lean_cpu_head()
            assert trl_utils._ChunkedLogProbFunction is cpu_head.CpuFirstLogProbs
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
        lora = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
        model = get_peft_model(model, lora)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(**batch, use_cache=False, fused_lm_head=True)
        out.loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        results.append((out.loss, out.entropy, out.is_top1, grads))
    # TRL's every position, twice; the lean head the labelled ones, forward and backward
    every = batch["input_ids"].shape[1] - 1
    assert projected == [("trl", every)] * 2 + [("lean", labelled)] * 2
    (exact, _, _, grads), bf16, lean = results
    (trl_loss, trl_entropy, trl_top1, trl_grads), (loss, entropy, top1, lean_grads) = bf16, lean
    assert torch.allclose(loss, trl_loss, rtol=1e-3) and torch.allclose(loss, exact, rtol=1e-2)
    assert torch.equal(top1, trl_top1)
    assert torch.allclose(entropy, trl_entropy, rtol=1e-2, atol=1e-3)
    assert grads.keys() == lean_grads.keys() and len(grads) > 10
    for name, grad in grads.items():  # as near the float32 gradient as TRL's bf16 one
        assert lean_grads[name].abs().sum() > 0, name
        trl_error = (trl_grads[name] - grad).norm() / grad.norm()
        lean_error = (lean_grads[name] - grad).norm() / grad.norm()
        assert lean_error < 1.5 * trl_error + 2e-3, (name, lean_error, trl_error)


def test_row_attention_computes_padding_free_batches_as_sdpa_does(tiny_model_dir):
    from transformers import AttentionInterface, AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    register_row_attention()
    rows = [{"input_ids": list(range(5, 5 + n))} for n in (7, 3, 12, 1, 9)]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(rows)
    batch["use_cache"] = False  # as TRL trains: a cache would hide the packing from the mask
    results, calls = {}, []
    plain = AttentionInterface._global_mapping["sdpa_rows"]

    def spy(module, query, *args, **kwargs):
        calls.append((query.shape[2], kwargs["cu_seq_lens_q"].tolist()))
        return plain(module, query, *args, **kwargs)

    AttentionInterface.register("sdpa_rows", spy)
    try:
        for attention in ("sdpa", "sdpa_rows"):
            model = AutoModelForCausalLM.from_pretrained(
                tiny_model_dir, attn_implementation=attention
            )
            out = model(**batch)
            out.loss.backward()
            grads = [p.grad for p in model.parameters()]
            results[attention] = (out.loss, out.logits, grads)
    finally:
        AttentionInterface.register("sdpa_rows", plain)
    assert calls == [(32, [0, 7, 10, 22, 23, 32])] * 2, "each layer sees the row bounds"
    (loss, logits, grads), (rows_loss, rows_logits, rows_grads) = results.values()
    torch.testing.assert_close(rows_loss, loss)
    torch.testing.assert_close(rows_logits, logits, rtol=1e-5, atol=1e-5)
    for a, b in zip(rows_grads, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_training_is_seeded_and_skips_finished_runs(toy, tmp_path):
    recipe, built, home = toy
    first = train(recipe, built, home, tmp_path / "a")
    second = train(recipe, built, home, tmp_path / "b")
    a = load_file(first.adapter_dir / "adapter_model.safetensors")
    b = load_file(second.adapter_dir / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    stamp = (tmp_path / "a" / "training_metrics.json").stat().st_mtime
    again = train(recipe, built, home, tmp_path / "a")
    assert again.metrics == first.metrics
    assert (tmp_path / "a" / "training_metrics.json").stat().st_mtime == stamp


def test_adapter_reloads_with_the_same_generations(toy, tmp_path, tiny_model_dir):
    recipe, built, home = toy
    result = train(recipe, built, home, tmp_path / "run")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(result.adapter_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "1 + 2 ="}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    peft = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), result.adapter_dir
    ).eval()
    loaded, _ = load_student(str(tiny_model_dir), result.adapter_dir, home)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()

    def greedy(model):
        return model.generate(**prompt, max_new_tokens=6, do_sample=False)[0].tolist()

    assert greedy(peft) == greedy(loaded)
    assert greedy(peft) != greedy(base), "the adapter changes what the model says"


def test_evaluation_is_deterministic_and_saved(toy, tmp_path):
    recipe, built, home = toy
    result = train(recipe, built, home, tmp_path / "run")
    model, tokenizer = load_student(recipe.students[0].model, result.adapter_dir, home)
    problems = [
        Problem(**json.loads(line))
        for line in (built.run.root / "problems" / "test.jsonl").read_text().splitlines()
    ]
    first = evaluate(model, tokenizer, problems, "math", recipe.eval, tmp_path / "e1")
    second = evaluate(model, tokenizer, problems, "math", recipe.eval, tmp_path / "e2")
    assert first == second and first["total"] == len(problems) == 8
    assert first["correct"] == sum(
        json.loads(line)["correct"] for line in (tmp_path / "e1" / "predictions.jsonl").open()
    )
    assert (tmp_path / "e1" / "predictions.jsonl").read_text() == (
        tmp_path / "e2" / "predictions.jsonl"
    ).read_text()
    assert first["ci95"] == [round(x, 4) for x in wilson_interval(first["correct"], 8)]


def test_wilson_interval_matches_known_values():
    low, high = wilson_interval(53, 300)  # 17.7%: the paper-scale level-3 result
    assert abs(low - 0.1379) < 1e-3 and abs(high - 0.2236) < 1e-3
    assert wilson_interval(0, 10)[0] == 0.0 and 0.27 < wilson_interval(0, 10)[1] < 0.28
    assert wilson_interval(10, 10)[1] == 1.0


def test_full_fine_tuning_changes_base_weights(tmp_path, tiny_model_dir, home):
    recipe = load_recipe(
        toy_recipe(
            tmp_path,
            tiny_model_dir,
            lora="full",
            sft={"num_train_epochs": 1, "learning_rate": 1e-3},
        )
    )
    built = build_dataset(recipe, home)
    result = train(recipe, built, home, tmp_path / "full")
    saved = load_file(result.adapter_dir / "model.safetensors")
    original = load_file(tiny_model_dir / "model.safetensors")
    assert not (result.adapter_dir / "adapter_config.json").exists()
    assert any(not torch.equal(saved[k], original[k]) for k in original if k in saved)


# --- recipe checks and the whole run -------------------------------------------------


def test_training_options_are_checked_against_trl_and_peft(tmp_path, tiny_model_dir):
    typo = load_recipe(toy_recipe(tmp_path, tiny_model_dir, sft={"learning_rat": 1e-4}))
    with pytest.raises(
        RecipeError,
        match=r"toy.yaml:\d+: train.sft.learning_rat: not a "
        r"SFTConfig option \(did you mean 'learning_rate'\?\)",
    ):
        check_training(typo)
    reserved = load_recipe(toy_recipe(tmp_path, tiny_model_dir, sft={"output_dir": "x"}))
    with pytest.raises(RecipeError, match="train.sft.output_dir: set by cot-factory"):
        check_training(reserved)
    bad_lora = load_recipe(toy_recipe(tmp_path, tiny_model_dir, lora={"rank": 4}))
    with pytest.raises(RecipeError, match="train.lora.rank: not a LoraConfig option"):
        check_training(bad_lora)
    text = toy_recipe(tmp_path, tiny_model_dir).read_text()
    text = text.replace("train:\n", "train:\n  configs: [cot-L9]\n")
    (tmp_path / "toy.yaml").write_text(text)
    with pytest.raises(RecipeError, match="train.configs\\[0\\]: 'cot-L9' is not built"):
        check_training(load_recipe(tmp_path / "toy.yaml"))


CHECK = """
import sys
from factory.recipe import RecipeError, load_recipe
from factory.train import check_training
for path in sys.argv[1:]:
    try:
        check_training(load_recipe(path))
        print("ok")
    except RecipeError as err:
        print(err)
"""


def with_model(tmp_path: Path, tiny_model_dir: Path, model: str, name: str) -> Path:
    path = toy_recipe(tmp_path, tiny_model_dir, name=name)
    recipe = yaml.safe_load(path.read_text())
    recipe["students"][0]["model"] = model
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_student_models_not_available_offline_are_recipe_errors(tmp_path, tiny_model_dir, hf_api):
    from huggingface_hub import hf_hub_download

    cached, uncached = f"tester/cached-{tmp_path.name[-6:]}", "tester/not-downloaded"
    hf_api.create_repo(cached)
    hf_api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=cached)
    hf_hub_download(cached, "config.json")  # into the session's HF cache, as a download would
    models = [str(tiny_model_dir), "smollm2-135m", cached, uncached, str(tmp_path / "nowhere")]
    paths = [with_model(tmp_path, tiny_model_dir, m, f"m{i}") for i, m in enumerate(models)]
    done = subprocess.run(
        [sys.executable, "-c", CHECK, *map(str, paths)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    folder, alias, in_cache, missing, nowhere = done.stdout.splitlines()
    assert (folder, alias, in_cache) == ("ok", "ok", "ok"), done.stderr[-2000:]
    where = r".*/m\d.yaml:(\d+): students\[0\]\.model: "
    match = re.fullmatch(
        where + r"'tester/not-downloaded' is not in the Hugging Face cache .*", missing
    )
    assert (
        match and "HF_HUB_OFFLINE=1" in missing and "hf download tester/not-downloaded" in missing
    )
    line = int(match.group(1))
    assert paths[3].read_text().splitlines()[line - 1].strip() == "- model: tester/not-downloaded"
    assert re.fullmatch(where + r".* is neither a local folder nor a Hub model id: .*", nowhere)


def test_online_student_models_are_looked_up_on_the_hub(tmp_path, tiny_model_dir, hf_api):
    known = f"tester/known-{tmp_path.name[-6:]}"
    hf_api.create_repo(known)
    check_training(load_recipe(with_model(tmp_path, tiny_model_dir, known, "known")))
    absent = load_recipe(with_model(tmp_path, tiny_model_dir, "tester/absent", "absent"))
    with pytest.raises(
        RecipeError,
        match=r"absent.yaml:\d+: students\[0\]\.model: 'tester/absent' "
        r"cannot be looked up on the Hub \(.*404.*\)",
    ):
        check_training(absent)


def test_row_attention_runs_in_float32_under_cpu_autocast(tiny_model_dir):
    """Under bf16 autocast on a CPU the rows are attended in float32 (CPU flash attention is
    twice as slow in bf16) and the output comes back in the value's dtype: what float32
    attention gives, rounded once."""
    import torch.nn.functional as F
    from transformers import AttentionInterface, AutoModelForCausalLM

    register_row_attention()
    module = AutoModelForCausalLM.from_pretrained(tiny_model_dir).model.layers[0].self_attn
    torch.manual_seed(0)
    query, key = torch.randn(1, 4, 12, 8), torch.randn(1, 4, 12, 8)
    value = torch.randn(1, 4, 12, 8).bfloat16()
    bounds = torch.tensor([0, 5, 12])
    rows = AttentionInterface._global_mapping["sdpa_rows"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = rows(module, query, key, value, None, cu_seq_lens_q=bounds, scaling=8**-0.5)
    want = torch.cat(
        [
            F.scaled_dot_product_attention(
                query[:, :, a:b], key[:, :, a:b], value[:, :, a:b].float(), is_causal=True
            )
            for a, b in ((0, 5), (5, 12))
        ],
        dim=2,
    ).transpose(1, 2)
    assert out.dtype == torch.bfloat16 and out.shape == want.shape
    torch.testing.assert_close(out.float(), want.bfloat16().float(), rtol=0, atol=0)
