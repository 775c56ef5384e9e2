"""Recipes for the streamed-build tests (tests/test_build_scale.py) and the benchmark
(bench/build_scale.py), and what a build of one of them produced, normalised to compare.

`SNAPSHOT_RECIPES` cover every feature a build has: the program teacher at two formats and
levels, answer-only and an empty reference config, a union mixture and a share mixture,
decontamination (report and drop), replayed files with wrong and unparseable answers, a
reasoning teacher's long configs with the overlong filter, usage with a price, and a sampling
teacher resampled until k verify (wrong answers and duplicates). `snapshot` is a build's rows,
statistics, card and traces with run-dependent text (temporary paths, the fake server's URL,
the recipe hash) replaced, so two builds of one recipe compare equal.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import yaml

EXPRESSION = re.compile(r"(-?\d+(?:\s*[-+]\s*\d+)+)\s*=")


def gym_recipe(tmp_path: Path, name: str, train: int, **sections) -> Path:
    """A reasoning-gym `chain_sum` recipe (2-4 terms of 1 digit, so questions repeat) taught by
    the program teacher at level 3, `sections` merged over it."""
    options = {"min_terms": 2, "max_terms": 4, "min_digits": 1, "max_digits": 1}
    recipe = {
        "name": name,
        "source": {"kind": "gym", "dataset": "chain_sum", "train": train, "test": 10, "seed": 0},
        "teacher": {"backend": "program", "name": "program"},
        "cot": {"levels": [3], "formats": ["cot"], "samples": 1, "answer_only": False},
        "dataset": {"repo_id": f"local/{name}", "license": "mit"},
    }
    recipe["source"]["options"] = options
    for key, value in sections.items():
        recipe[key] = {**recipe[key], **value} if isinstance(recipe.get(key), dict) else value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def program_recipe(tmp_path: Path) -> Path:
    """The program teacher at two formats and levels, answer-only, an empty reference config,
    two mixtures, and decontamination reporting the training questions an extra file holds."""
    from factory.recipe import load_recipe
    from factory.sources import load_problems

    two_terms = {"options": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}
    path = gym_recipe(tmp_path, "program", 40, source=two_terms)
    recipe = load_recipe(path)
    train = load_problems(recipe.source, recipe.dataset)["train"]
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"q": p.question}) + "\n" for p in train[3:30:7]))
    against = [{"name": "held", "files": str(held), "column": "q"}]
    cot = {"levels": [1, 3], "formats": ["cot", "subq"], "answer_only": True, "reference": True}
    cot["decontaminate"] = {"action": "report", "against": against}
    mixtures = {"mix-all": ["cot-L1", "subq-L3"], "mix-some": {"cot-L3": 0.5, "answer-only": 0.3}}
    return gym_recipe(tmp_path, "program", 40, source=two_terms, cot=cot, mixtures=mixtures)


def replay_recipe(tmp_path: Path) -> Path:
    """tests/test_build.py's replayed files (a wrong, an unparseable and a missing rationale) at
    two levels, a mixture, and contaminated rows dropped."""
    from test_supervision import LONG, edit, with_two_levels

    path = with_two_levels(tmp_path)
    test = {"id": "t1", "q": "a BOX has 10 pens, 6 are taken... How many are LEFT", "a": "4"}
    (tmp_path / "test.jsonl").write_text(json.dumps(test) + "\n")
    (tmp_path / "gsm.jsonl").write_text(json.dumps({"problem": LONG}) + "\n")
    against = [{"name": "gsm", "files": str(tmp_path / "gsm.jsonl"), "column": "problem"}]
    edit(path, cot={"decontaminate": {"action": "drop", "ngram": 8, "against": against}})
    return edit(path, mixtures={"mix": {"cot-L2": 1.0, "cot-L3": 1.0, "answer-only": 0.5}})


def reasoning_recipe(tmp_path: Path, server) -> Path:
    """A reasoning teacher (thinking in `reasoning`), long and short configs at two levels, the
    longest chains over `max_reasoning_tokens`, a long/short mixture and a price."""
    from test_generate import fake_teacher, write_recipe

    teacher = fake_teacher(
        server, max_tokens=512, reasoning=True, price={"input": 1.0, "output": 4.0}
    )
    path = write_recipe(tmp_path, teacher, train=12, levels=(1, 2), name="reasoning")
    recipe = yaml.safe_load(path.read_text())
    recipe["source"]["options"].update(min_terms=2, max_terms=4)
    recipe["cot"].update(max_reasoning_tokens=150, answer_only=True)
    recipe["mixtures"] = {"half-long": {"cot-L1": 1.0, "cot-L1-think": 0.5}}
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def total_of(body: dict) -> int:
    """The sum a chain_sum request asks for."""
    problem = body["messages"][-1]["content"].split("Problem:")[-1]
    terms = re.findall(r"[-+]?\s*\d+", EXPRESSION.search(problem).group(1))
    return sum(int(t.replace(" ", "")) for t in terms)


def right_sum(body: dict) -> str:
    """A teacher that gets every sum right."""
    return f"I add the terms in order.\nThe answer is {total_of(body)}."


def long_right_sum(body: dict) -> str:
    """A teacher that gets every sum right after 1000 words of notes (7 KB, none repeated)."""
    notes = random.Random(body["messages"][-1]["content"])
    words = " ".join(f"w{notes.randrange(10**6)}" for _ in range(1000))
    return f"{words}.\nThe answer is {total_of(body)}."


def uneven_coin(body: dict) -> str:
    """A sampling teacher right on some seeds of a problem and wrong on others, whose right
    answers repeat word for word on some seeds (duplicates)."""
    total, seed = total_of(body), body["seed"]
    answer = total if seed % 3 != total % 3 else total + 1
    return f"Attempt {seed % 2}: I add the terms in order.\nThe answer is {answer}."


def sampling_recipe(tmp_path: Path, server) -> Path:
    """A sampling teacher asked for 2 verified samples per problem within 5 attempts."""
    from test_generate import fake_teacher, write_recipe

    teacher = fake_teacher(server, temperature=0.7, seed=0, price={"input": 2.0, "output": 8.0})
    path = write_recipe(tmp_path, teacher, train=8, levels=(1, 2), samples=2, name="sampling")
    recipe = yaml.safe_load(path.read_text())
    recipe["cot"].update(max_attempts=5, answer_only=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


# --- snapshots --------------------------------------------------------------------------------


def normalised(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


def rows_digest(rows: list[dict], replacements: dict[str, str]) -> dict:
    """How many rows, a digest of all of them in order, and the first one."""
    lines = [
        normalised(json.dumps(r, sort_keys=True, ensure_ascii=False), replacements) for r in rows
    ]
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return {"n": len(rows), "sha256": digest, "first": json.loads(lines[0]) if lines else None}


def dataset_rows(folder: Path) -> dict[str, dict[str, list[dict]]]:
    """Every split of every config of a dataset folder, read with `load_config`."""
    from factory.shards import load_config

    found = {}
    for config in sorted(p.name for p in folder.iterdir() if p.is_dir()):
        splits = sorted({f.name.split("-")[0] for f in (folder / config).glob("*.parquet")})
        found[config] = {s: load_config(folder, config, s).to_list() for s in splits}
    return found


def snapshot(done, replacements: dict[str, str]) -> dict:
    """A build's statistics, card, rows and traces, with `replacements` (and the recipe hash)
    made in their text."""
    replacements = {**replacements, done.recipe.hash: "<hash>"}
    stats = normalised(json.dumps(done.manifest.configs, sort_keys=True), replacements)
    card = normalised((done.run.dataset / "README.md").read_text(), replacements)
    traces = [json.loads(line) for line in done.run.traces.read_text().splitlines()]
    rows = {
        f"{config}/{split}": rows_digest(split_rows, replacements)
        for config, splits in dataset_rows(done.run.dataset).items()
        for split, split_rows in splits.items()
    }
    return {
        "stats": json.loads(stats),
        "card": card,
        "rows": rows,
        "traces": rows_digest(traces, replacements),
    }
