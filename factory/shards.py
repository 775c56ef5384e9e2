"""The files of a dataset folder in the Hub layout: shard names, column types, writing a shard
and reading a config back. `build` writes these folders; training, evaluation and the Space read
them."""

from __future__ import annotations

from pathlib import Path

SHARD = "{split}-00000-of-00001.parquet"
PROBLEMS_CONFIG = "problems"


def load_config(folder: Path, config: str, split: str = "train"):
    """One split of one config of a dataset folder in this layout. The shards are read by path:
    `load_dataset(folder, config)` caches a local folder under its name alone (datasets 5.2), so
    two folders called `dataset` would share one cache entry and return each other's rows."""
    from datasets import load_dataset

    files = sorted(str(p) for p in (folder / config).glob(f"{split}-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{folder}: config {config!r} has no {split!r} split")
    return load_dataset("parquet", data_files={split: files}, split=split)


def _features(columns: dict):
    from datasets import Features, List, Value

    def feature(kind):
        if kind == "messages":
            return List({"role": Value("string"), "content": Value("string")})
        return List(Value("string")) if kind == "strings" else Value(kind)

    return Features({name: feature(kind) for name, kind in columns.items()})


COT_FEATURES = {
    "prompt": "messages",
    "completion": "messages",
    "id": "string",
    "sample": "int32",
    "question": "string",
    "choices": "strings",
    "answer": "string",
    "predicted_answer": "string",
    "correct": "bool",
    "teacher": "string",
    "teacher_params": "string",
    "format": "string",
    "level": "int32",
    "num_steps": "int32",
    "num_tokens": "int32",
    "finish_reason": "string",
    "raw_output": "string",
    "reasoning": "string",  # a reasoning teacher's thinking (in the completion of -think rows only)
    "reasoning_source": "string",  # where it was: `reasoning`, `reasoning_content`, `inline`
    "num_reasoning_tokens": "int32",
    "num_reasoning_steps": "int32",
    "pass_rate": "float32",
    "source_config": "string",
    "contaminated_by": "strings",
    "replica": "string",
}
PROBLEM_FEATURES = {
    "id": "string",
    "question": "string",
    "answer": "string",
    "choices": "strings",
    "reference_rationale": "string",
}


def write_parquet(rows: list[dict], path: Path, columns: dict) -> None:
    """One shard holding `rows`, at `path`; a column a row lacks is null in it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    schema = _features(columns).arrow_schema
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def held_out_problems(dataset_dir: Path) -> list:
    """The held-out problems of a dataset folder (its `problems` config, `test` split)."""
    from factory.sources import Problem

    return [Problem(**row) for row in load_config(dataset_dir, PROBLEMS_CONFIG, "test")]
