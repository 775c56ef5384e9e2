"""transformers' continuous batching on this CPU against the static batches evaluation uses.

SmolLM2-135M-Instruct (the base model) answers the first `--problems` SVAMP test problems of
`recipes/svamp-paper.yaml`, greedy, `--max-new-tokens` each, in `--dtype`, two ways:

- static: `factory.evaluate.evaluate`, batches of `--batch-size` problems sorted by length, each
  one left-padded `generate` that runs until its longest answer ends (what evaluation does);
- continuous: `model.generate_batch` (transformers' continuous batching: paged KV cache, a
  finished answer's slot refilled at once), the same chat prompts, `--batch-size` requests at a
  time at most (`max_batch_tokens` sized for them).

The two run back to back, rotating which goes first in each repeat. Outputs that differ from
the static path's are counted: continuous batching changes the batch a row is computed in, so
in bf16 some greedy outputs may differ.

    .venv/bin/python bench/continuous_batching.py [--problems 64] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from eval_batching import HOME, STUDENT, measure, svamp_test_problems


def continuous(model, tokenizer, problems, task: str, batch_size: int, tokens: int) -> tuple:
    """(seconds, texts in problem order) of one `generate_batch` call over every problem."""
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    from factory.questions import student_messages

    chats = [student_messages(p.question, task=task, choices=p.choices) for p in problems]
    texts = [
        tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats
    ]
    inputs = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    longest = max(len(i) for i in inputs) + tokens
    config = GenerationConfig(
        max_new_tokens=tokens,
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    batching = ContinuousBatchingConfig(max_batch_tokens=batch_size * longest)
    start = time.perf_counter()
    results = model.generate_batch(
        inputs, generation_config=config, continuous_batching_config=batching
    )
    seconds = time.perf_counter() - start
    order = sorted(results.values(), key=lambda r: int(str(r.request_id).rsplit("_", 1)[-1]))
    texts = [tokenizer.decode(r.generated_tokens, skip_special_tokens=True) for r in order]
    return seconds, texts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    from factory.inference import load_for_generation

    task, problems = svamp_test_problems(args.problems)
    model, tokenizer = load_for_generation(STUDENT, HOME, args.dtype)
    seconds: dict[str, list[float]] = {"static": [], "continuous": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for mode in ("static", "continuous") if i % 2 == 0 else ("continuous", "static"):
                if mode == "static":
                    done = measure(
                        model,
                        tokenizer,
                        problems,
                        task,
                        args.batch_size,
                        args.max_new_tokens,
                        Path(tmp) / f"static-{i}",
                    )
                    seconds[mode].append(done.seconds)
                    static = [p["output"] for p in done.predictions]
                else:
                    took, texts = continuous(
                        model, tokenizer, problems, task, args.batch_size, args.max_new_tokens
                    )
                    seconds[mode].append(took)
    static_s, cont_s = (statistics.median(seconds[m]) for m in ("static", "continuous"))
    differ = sum(a.strip() != b.strip() for a, b in zip(static, texts, strict=True))
    print(
        f"continuous batching: {STUDENT} on {args.problems} SVAMP test problems, greedy, "
        f"{args.max_new_tokens} new tokens, {args.dtype}, {args.batch_size} at a time"
    )
    print(f"static batches (evaluate): {static_s:.1f} s, {args.problems / static_s:.2f} problems/s")
    print(f"continuous (generate_batch): {cont_s:.1f} s, {args.problems / cont_s:.2f} problems/s")
    print(f"continuous / static speed: {static_s / cont_s:.2f}x; outputs that differ: {differ}")


if __name__ == "__main__":
    main()
