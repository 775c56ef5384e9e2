"""The stages strung together for one recipe, each writing its output into the run folder:

{home}/runs/{recipe}-{hash}/
    recipe.yaml          the recipe as written
    problems/{split}.jsonl
    traces.jsonl         every teacher output with its verification, dropped ones included
    dataset/             the Hub-layout dataset folder (parquet + README.md card)
    manifest.json        what was built, with which versions, and where it was published
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from factory import __version__
from factory.recipe import Recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildResult:
    recipe: Recipe
    run_dir: Path
    dataset_dir: Path
    stats: dict[str, dict]
    seconds: float


def build_dataset(recipe: Recipe, home: Path) -> BuildResult:
    """source -> generate -> verify -> build, for one recipe."""
    from factory.build import build
    from factory.cache import GenerationCache
    from factory.generate import generate
    from factory.paths import cache_path, run_dir
    from factory.sources import load_problems
    from factory.verify import verify

    start = time.perf_counter()
    out = run_dir(home, recipe.name, recipe.hash)
    out.mkdir(parents=True, exist_ok=True)
    if recipe.path:
        shutil.copyfile(recipe.path, out / "recipe.yaml")
    problems = load_problems(recipe.source, recipe.dataset)
    for split, items in problems.items():
        write_jsonl(out / "problems" / f"{split}.jsonl", [p.to_dict() for p in items])
    log.info("source: %s", ", ".join(f"{len(v)} {k}" for k, v in problems.items()))
    cache = GenerationCache(cache_path(home))
    try:
        traces = generate(recipe, problems["train"], cache, home)
    finally:
        cache.close()
    traces = verify(traces, recipe.source.task, recipe.cot.drop)
    write_jsonl(out / "traces.jsonl", traces)
    stats = build(recipe, problems, traces, out / "dataset")
    seconds = time.perf_counter() - start
    update_manifest(
        out,
        {
            "recipe": recipe.name,
            "recipe_hash": recipe.hash,
            "tag": recipe.tag,
            "dataset_repo": recipe.dataset.repo_id,
            "cot_factory_version": __version__,
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(seconds, 1),
            "configs": stats,
        },
    )
    return BuildResult(recipe, out, out / "dataset", stats, seconds)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write rows atomically: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def update_manifest(run: Path, fields: dict) -> dict:
    """Merge `fields` into the run's manifest.json (atomically) and return it."""
    path = run / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest.update(fields)
    tmp = path.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return manifest
