"""The files of a dataset folder in the Hub layout: shard names, column types, writing shards
and reading a config back. `build` writes these folders; training, evaluation and the Space read
them.

A split of a config is `{split}-0000i-of-0000n.parquet`, as the Hub names shards: a shard per
`ROWS_PER_SHARD` rows, written a row group at a time as rows come (`ShardWriter`: `ROW_GROUP` rows
or `ROW_GROUP_CHARS` characters of text, whichever comes first), so a split of any size, however
long its rows, is written in bounded memory. Readers glob `{split}-*` (`load_config`, the card's
`data_files`), so one shard or many read the same.
"""

from __future__ import annotations

from pathlib import Path

SHARD = "{split}-00000-of-00001.parquet"  # a split that fits in one shard
PROBLEMS_CONFIG = "problems"
ROWS_PER_SHARD = 10_000
ROW_GROUP = 1_000  # rows held before they are written, at most
ROW_GROUP_CHARS = 4_000_000  # characters of text held before they are written, at most


def shard_name(split: str, index: int, count: int) -> str:
    """`train-00001-of-00003.parquet`: the Hub's name for shard `index` of `count`."""
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


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


class ShardWriter:
    """One split of one config, written as its rows come: a row group every `ROW_GROUP` rows or
    `ROW_GROUP_CHARS` characters, a new shard every `rows_per_shard` rows, named
    `{split}-0000i-of-0000n.parquet` on `close`."""

    def __init__(self, folder: Path, split: str, columns: dict, rows_per_shard=ROWS_PER_SHARD):
        self.folder, self.split, self.rows_per_shard = folder, split, rows_per_shard
        self.schema = _features(columns).arrow_schema  # with the features `datasets` reads
        self.rows, self._batch, self._chars, self._files, self._writer = 0, [], 0, [], None

    def add(self, row: dict) -> None:
        self._batch.append(row)
        self._chars += _chars(row)
        self.rows += 1
        full = len(self._batch) >= ROW_GROUP or self._chars >= ROW_GROUP_CHARS
        if full or self.rows % self.rows_per_shard == 0:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            self._files.append(self.folder / f"{self.split}-{len(self._files):05d}.partial")
            self.folder.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._files[-1], self.schema)
        self._writer.write_table(pa.Table.from_pylist(self._batch, schema=self.schema))
        self._batch, self._chars = [], 0
        if self.rows % self.rows_per_shard == 0:
            self._writer = self._writer.close()

    def close(self) -> int:
        """Write what is left and name the shards; returns the rows written."""
        if self._batch:
            self._flush()
        if self._writer is not None:
            self._writer = self._writer.close()
        for index, path in enumerate(self._files):
            path.rename(path.with_name(shard_name(self.split, index, len(self._files))))
        return self.rows


def _chars(value) -> int:
    """The characters of text in a row (its strings, in lists and messages too)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_chars(v) for v in value.values())
    return sum(_chars(v) for v in value) if isinstance(value, list) else 0


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
