"""The demo Space's one batched call for all students against one call per student.

Builds a Space folder the way the product does (`spaces/app.py` next to `answers.py`), loads
SmolLM2-135M-Instruct (`smollm2-135m`) once through the app's own `Students` with `--adapters`
LoRA adapters attached (cot-factory's default: r=16 on every linear layer; random lora_A,
lora_B ~ N(0, `--scale`) so their greedy outputs differ), and times one question answered with
`--max-new-tokens` greedy tokens:

- batched: the app's path, every student (the base and each adapter) as one row of ONE
  `generate` call with PEFT's per-row `adapter_names`, streamed as the app streams it;
- separate: the same students one after another, each alone (`set_adapter`, or the adapters
  disabled for the base), a plain `generate` call each: what one model copy per student would do.

The two run back to back in every repeat, alternating which goes first, so the machine's noise
falls on both alike; medians are shown. `cpu s` is the process's CPU time and `cpu share` that
over wall time x torch threads: well under 1 means other work took the cores. On a shared
machine `--threads 1` keeps CPU time honest (no spinning worker threads). Greedy outputs should
be equal either way; students whose answers differ are counted, not fatal. `--tiny` uses the
tests' tiny random model instead.

    .venv/bin/python bench/space_batching.py [--adapters 4] [--max-new-tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

HOME = Path(tempfile.gettempdir()) / "cot-factory-bench-home"  # the converted model, reused
QUESTION = (
    "Jack had 8 pens and Mary had 5 pens. Jack gave 3 pens to Mary. How many pens does Mary "
    "have now?"
)
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}


def base_model(tiny: bool, tmp: Path) -> str:
    """SmolLM2-135M-Instruct as a safetensors folder (converted once), or the tiny model."""
    if tiny:
        from tiny import build_tiny_model

        return str(build_tiny_model(tmp / "tiny-llama"))
    from factory.models import resolve_model

    return resolve_model("smollm2-135m", HOME)


def make_adapters(base: str, n: int, scale: float, tmp: Path) -> list[Path]:
    """`n` random LoRA adapters (seeded, lora_B ~ N(0, scale)) saved as adapter folders."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folders = []
    for i in range(n):
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(1000 + i)
            peft = get_peft_model(model, LoraConfig(**LORA))  # cot-factory's default LoRA
            for name, param in peft.named_parameters():
                if "lora_B" in name:
                    param.normal_(0.0, scale)
        folders.append(tmp / f"adapter-{i}")
        peft.save_pretrained(folders[-1])
    return folders


def load_app(tmp: Path):
    """`spaces/app.py` imported from a Space folder beside a copy of `factory/answers.py`."""
    space = tmp / "space"
    space.mkdir()
    shutil.copy(ROOT / "spaces" / "app.py", space / "app.py")
    shutil.copy(ROOT / "factory" / "answers.py", space / "answers.py")
    sys.path.insert(0, str(space))
    spec = importlib.util.spec_from_file_location("space_app", space / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


def timed(fn, *args) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, result) of one call."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return time.perf_counter() - start, time.process_time() - cpu, result


def batched(students, ids, max_new: int) -> list[str]:
    """The app's path: one streamed `generate` for every student; the final texts."""
    return list(students.stream(ids, max_new))[-1]  # the snapshot after the last step


def separate(students, ids, max_new: int) -> tuple[list[str], list[int]]:
    """Each student alone, one plain `generate` call after another; texts and new tokens."""
    import torch

    model, tokenizer, texts, lengths = students.model, students.tokenizer, [], []
    for name in students.names:
        # The lock: the batched call's PEFT hooks stay until its `generate` has returned.
        with students.lock, torch.inference_mode():
            if name == students.names[0]:  # the base: no adapter
                with model.disable_adapter():
                    out = _generate(students, ids, max_new)
            else:
                model.set_adapter(name)
                out = _generate(students, ids, max_new)
        tokens = out[0, ids.shape[1] :].tolist()
        end = next((i for i, t in enumerate(tokens) if t in students.stop_ids), len(tokens))
        texts.append(tokenizer.decode(tokens[:end], skip_special_tokens=True))
        lengths.append(end)
    return texts, lengths


def _generate(students, ids, max_new: int):
    return students.model.generate(
        input_ids=ids,
        attention_mask=ids.new_ones(ids.shape),
        max_new_tokens=max_new,
        do_sample=False,
        eos_token_id=sorted(students.stop_ids),
        pad_token_id=students.tokenizer.pad_token_id,
    )


def benchmark(n: int, max_new: int, repeats: int, scale: float, tiny: bool) -> dict:
    """Build the base and adapters, load them once, warm up, then the interleaved repeats."""
    import torch

    with tempfile.TemporaryDirectory(prefix="bench-space-") as name:
        tmp = Path(name)
        base = base_model(tiny, tmp)
        adapters = make_adapters(base, n, scale, tmp)
        app = load_app(tmp)
        config = {
            "base_model": base,
            "base_label": "base",
            "adapters": [{"label": f"lora-{i}", "repo": str(a)} for i, a in enumerate(adapters)],
            "max_input_tokens": 512,
            "max_new_tokens": max_new,
        }
        students = app.Students(config)
        ids = students.encode(QUESTION)
        batched(students, ids, max_new)  # warm-up: first-call set-up, not measured
        modes = {"batched": batched, "separate": separate}
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        cpus: dict[str, list[float]] = {mode: [] for mode in modes}
        outputs = {}
        for i in range(repeats):
            for mode in list(modes) if i % 2 == 0 else list(modes)[::-1]:
                seconds, cpu, outputs[mode] = timed(modes[mode], students, ids, max_new)
                times[mode].append(seconds)
                cpus[mode].append(cpu)
    b, s = statistics.median(times["batched"]), statistics.median(times["separate"])
    cpu = {mode: statistics.median(v) for mode, v in cpus.items()}
    batch_texts, (alone_texts, lengths) = outputs["batched"], outputs["separate"]
    return {
        "model": "tiny random Llama" if tiny else "SmolLM2-135M-Instruct (smollm2-135m)",
        "students": len(students.labels),
        "adapters": n,
        "prompt_tokens": ids.shape[1],
        "max_new_tokens": max_new,
        "new_tokens": lengths,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "batched_s": b,
        "separate_s": s,
        "speedup": s / b,
        "cpu_s": cpu,
        "cpu_speedup": cpu["separate"] / cpu["batched"],
        "cpu_share": {
            m: cpu[m] / t / torch.get_num_threads() for m, t in [("batched", b), ("separate", s)]
        },
        "times_s": times,
        "distinct_answers": len(set(alone_texts)),
        "differing_students": sum(x != y for x, y in zip(batch_texts, alone_texts, strict=True)),
    }


def report(r: dict) -> str:
    """The summary as a compact table."""
    tokens = sum(r["new_tokens"])
    names = {"batched": "batched (1 call)", "separate": f"separate ({r['students']} calls)"}
    lines = [
        f"space batching: {r['model']}, {r['students']} students (base + {r['adapters']} LoRA"
        f" adapters), prompt {r['prompt_tokens']} tokens, greedy, up to {r['max_new_tokens']}"
        f" new tokens; median of {r['repeats']} repeat(s), {r['torch_threads']} torch threads",
        f"{'mode':<22}{'seconds':>9}{'answer tokens/s':>17}{'cpu s':>8}{'cpu share':>11}",
    ]
    for mode, name in names.items():
        seconds, cpu = r[f"{mode}_s"], r["cpu_s"][mode]
        lines.append(
            f"{name:<22}{seconds:>9.2f}{tokens / seconds:>17.1f}{cpu:>8.2f}"
            f"{r['cpu_share'][mode]:>11.2f}"
        )
    lines += [
        f"one batched call / one call per student: {r['speedup']:.2f}x faster"
        f" ({r['cpu_speedup']:.2f}x less CPU time)",
        f"new tokens per student (each alone): {r['new_tokens']} (sum {tokens}); the batch runs"
        f" until its longest row stops: {max(r['new_tokens'])} steps",
        f"answers: {r['distinct_answers']} distinct of {r['students']}; batched differs from"
        f" alone for {r['differing_students']} student(s)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapters", type=int, default=4, help="LoRA adapters besides the base")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; medians")
    parser.add_argument("--scale", type=float, default=0.02, help="std of the random lora_B")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny random model")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = benchmark(args.adapters, args.max_new_tokens, args.repeats, args.scale, args.tiny)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
