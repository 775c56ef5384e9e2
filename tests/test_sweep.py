"""Sweeps and reports on a tiny model: every run trained and evaluated, a re-run trains nothing,
the report's tables, paired comparisons and plots match the runs' files."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_train import toy_recipe

from factory.files import read_jsonl, write_json, write_jsonl
from factory.paths import TRAINING_METRICS as DONE
from factory.paths import RunFolder
from factory.recipe import load_recipe
from factory.report import RunResult, write_report
from factory.run import sweep
from factory.scores import summarize
from factory.stats import holm, pooled_interval, wilson_interval

pytestmark = pytest.mark.slow  # starts servers or trains models

PNG = b"\x89PNG\r\n\x1a\n"


def sweep_recipe(tmp_path, tiny_model_dir, seeds=(0,)):
    path = toy_recipe(tmp_path, tiny_model_dir, sft={"num_train_epochs": 2}, name="sweepy")
    recipe = yaml.safe_load(path.read_text())
    recipe["source"]["columns"] = {"rationale": "metadata.expression"}
    recipe["cot"]["reference"] = True
    recipe["train"]["seeds"] = list(seeds)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def swept(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("sweep")
    home = tmp / "home"
    recipe = load_recipe(sweep_recipe(tmp, tiny_model_dir, seeds=(0, 1)))
    report = sweep(recipe, home)
    return recipe, home, report


def test_sweep_trains_and_evaluates_every_run(swept):
    _, home, report = swept
    run = next((home / "runs").glob("sweepy-*"))
    for config in ("answer-only", "reference"):
        for seed in (0, 1):
            folder = run / "students" / "tiny" / config / f"seed-{seed}"
            assert (folder / DONE).is_file() and (folder / "eval" / "eval_results.json").is_file()
            assert not (folder / "adapter" / "eval_results.json").exists(), "outputs untouched"
    seeds = [
        json.loads((run / "students/tiny/answer-only" / f"seed-{s}" / DONE).read_text())
        for s in (0, 1)
    ]
    assert seeds[0]["train_loss"] != seeds[1]["train_loss"], "each seed is its own run"
    assert (report / "report.md").is_file()


def resweep(recipe, home) -> subprocess.CompletedProcess:
    """`cot-factory sweep` again in `home`, which must find all four runs done."""
    out = subprocess.run(
        [sys.executable, "-m", "factory.cli", "sweep", str(recipe.path), "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "4 runs, 4 done, 0 to go" in out.stderr
    return out


def test_rerun_trains_nothing(swept, tmp_path):
    recipe, home, _ = swept
    run = next((home / "runs").glob("sweepy-*"))
    stamps = {p: p.stat().st_mtime for p in run.glob(f"students/*/*/seed-*/{DONE}")}
    out = resweep(recipe, home)
    assert {p: p.stat().st_mtime for p in stamps} == stamps
    assert "tiny: `" in out.stdout and "report: " in out.stdout


SITTINGS = Path(__file__).parents[1] / "docs/results/svamp-paper/sittings.sh"


def sittings(action: str, script: Path, home: Path, recipe) -> subprocess.CompletedProcess:
    """docs/results/svamp-paper/sittings.sh, copied to `script` so it keeps runs beside it."""
    env = {
        **os.environ,
        "COT_FACTORY_HOME": str(home),
        "CF": str(Path(sys.executable).with_name("cot-factory")),
        "RECIPE": str(recipe.path),
    }
    return subprocess.run(
        ["bash", str(script), action], env=env, capture_output=True, text=True, timeout=600
    )


def test_a_study_carries_across_sittings_without_its_adapters(swept, tmp_path):
    recipe, home, report = swept
    script = tmp_path / "sittings.sh"
    shutil.copy(SITTINGS, script)
    run = next((home / "runs").glob("sweepy-*"))
    folder = tmp_path / "runs" / run.name / "students/tiny"
    (folder / "reference/seed-0.partial").mkdir(parents=True)  # left by a killed archive
    kept = sittings("archive", script, home, recipe)
    assert kept.returncode == 0, kept.stderr
    assert "kept 5 evaluated runs" in kept.stdout  # 2 configs x 2 seeds, and the base model
    assert not list(folder.rglob("adapter*")) and not list(folder.rglob("checkpoint*"))
    assert not list(folder.rglob("*.partial"))
    base = run / "students/tiny/base"
    for name in ("eval_results.json", "predictions.jsonl"):
        assert (folder / "base" / name).read_bytes() == (base / name).read_bytes()
    for config, seed in itertools.product(("answer-only", "reference"), (0, 1)):
        trained = run / "students/tiny" / config / f"seed-{seed}"
        for name in (DONE, "training_config.json", "eval/predictions.jsonl"):
            copy = folder / config / f"seed-{seed}" / name
            assert copy.read_bytes() == (trained / name).read_bytes()

    fresh = tmp_path / "fresh"
    (folder / "answer-only/seed-0.partial").mkdir()  # an archive killed before its rename
    restored = sittings("restore", script, fresh, recipe)
    assert restored.returncode == 0, restored.stderr
    assert "restored 5 evaluations" in restored.stdout
    assert not list(fresh.rglob("*.partial"))
    resweep(recipe, fresh)
    twice = sittings("restore", script, fresh, recipe)
    assert twice.returncode == 1 and "restore into a fresh home" in twice.stderr
    again = json.loads(next(fresh.glob("runs/sweepy-*/report/results.json")).read_text())
    first = json.loads((report / "results.json").read_text())
    for key in ("runs", "base", "comparisons", "recommendations"):
        assert again[key] == first[key], key

    (tmp_path / "runs" / run.name).rename(tmp_path / "runs" / "sweepy-0123456789ab")
    other = sittings("restore", script, tmp_path / "third", recipe)
    assert other.returncode == 1 and "kept from another build" in other.stderr


def test_report_tables_match_the_runs_metrics(swept):
    _, home, report = swept
    run = next((home / "runs").glob("sweepy-*"))
    results = json.loads((report / "results.json").read_text())
    text = (report / "report.md").read_text()
    stats = json.loads((run / "manifest.json").read_text())["configs"]
    for entry in results["runs"]:
        metrics = [
            json.loads(
                (
                    run
                    / "students/tiny"
                    / entry["config"]
                    / f"seed-{s}"
                    / "eval"
                    / "eval_results.json"
                ).read_text()
            )
            for s in (0, 1)
        ]
        correct, total = sum(m["correct"] for m in metrics), sum(m["total"] for m in metrics)
        assert (entry["correct"], entry["total"]) == (correct, total) and total == 16
        marks = [
            {
                row["id"]: row["correct"]
                for row in read_jsonl(
                    run / "students/tiny" / entry["config"] / f"seed-{s}/eval/predictions.jsonl"
                )
            }
            for s in (0, 1)
        ]
        shares = [(marks[0][i] + marks[1][i]) / 2 for i in marks[0]]
        assert entry["ci95"] == [round(x, 4) for x in pooled_interval(shares)]
        row = next(
            line for line in text.splitlines() if line.startswith(f"| `{entry['config']}` |")
        )
        assert f"| {100 * correct / total:.1f}% |" in row
        assert f"[{100 * entry['ci95'][0]:.1f}%, {100 * entry['ci95'][1]:.1f}%]" in row
        tokens = stats[entry["config"]]["mean_tokens"]
        assert f"| {tokens:.1f} |" in row and "| 2 (±" in row
        trained = json.loads(
            (run / "students/tiny" / entry["config"] / "seed-0/training_metrics.json").read_text()
        )
        precision = f"{trained['precision']} / {metrics[0]['dtype']}"
        assert entry["precision"] == precision and row.endswith(f"| {precision} |")
    base = json.loads((run / "students/tiny/base/eval_results.json").read_text())
    assert results["base"]["tiny"]["accuracy"] == base["accuracy"]
    assert f"Base model without distillation: {100 * base['accuracy']:.1f}%" in text
    assert "**Recommendation.**" in text


def shares(folders) -> tuple[int, dict]:
    """Seeds and, per problem every seed evaluated, how many of them got it right."""
    marks = [{r["id"]: r["correct"] for r in read_jsonl(f / "predictions.jsonl")} for f in folders]
    ids = set.intersection(*(set(m) for m in marks))
    return len(marks), {i: sum(m[i] for m in marks) for i in ids}


def sign_flip_by_enumeration(diffs: list[float]) -> float:
    """The sign-flip p-value by listing every sign vector (few problems here)."""
    nonzero = [d for d in diffs if d]
    sums = [
        sum(s * d for s, d in zip(signs, nonzero, strict=True))
        for signs in itertools.product((1, -1), repeat=len(nonzero))
    ]
    return sum(abs(t) >= abs(sum(nonzero)) - 1e-9 for t in sums) / len(sums)


def test_report_comparisons_match_the_prediction_files(swept):
    _, home, report = swept
    run = next((home / "runs").glob("sweepy-*"))
    results = json.loads((report / "results.json").read_text())
    arms = {
        c: shares([run / f"students/tiny/{c}/seed-{s}/eval" for s in (0, 1)])
        for c in ("answer-only", "reference")
    }
    arms["base"] = shares([run / "students/tiny/base"])
    comparisons = results["comparisons"]["tiny"]
    assert {frozenset((c["a"], c["b"])) for c in comparisons} == {
        frozenset(pair) for pair in itertools.combinations(arms, 2)
    }
    for c in comparisons:
        (ka, a), (kb, b) = arms[c["a"]], arms[c["b"]]
        diffs = [a[i] / ka - b[i] / kb for i in a]
        assert (c["n"], c["seeds"], c["test"]) == (8, [ka, kb], "exact sign-flip")
        assert c["accuracy_a"] == pytest.approx(sum(a.values()) / (8 * ka))
        assert c["difference"] == pytest.approx(sum(diffs) / 8)
        assert (c["a_better"], c["b_better"]) == (
            sum(d > 0 for d in diffs),
            sum(d < 0 for d in diffs),
        )
        assert c["p"] == pytest.approx(sign_flip_by_enumeration(diffs))
    assert [c["p_holm"] for c in comparisons] == holm([c["p"] for c in comparisons])
    assert results["comparison_methods"]["alpha"] == 0.05
    assert "**Paired comparisons**" in (report / "report.md").read_text()


def rewrite(folder, marks: list[bool]) -> None:
    """Give an evaluation these answers, in problem order (fewer marks: fewer problems)."""
    rows = read_jsonl(folder / "predictions.jsonl")
    rows = [{**row, "correct": ok} for row, ok in zip(rows[: len(marks)], marks, strict=True)]
    write_jsonl(folder / "predictions.jsonl", rows)
    write_json(folder / "eval_results.json", summarize(rows))


def test_report_compares_seed_pooled_answers_aligned_by_problem(swept, tmp_path):
    """The sweep's folders with answers set by hand: 8 problems, base model right on none,
    `reference` right on all in both seeds but seed 1 evaluated only the first 7, `answer-only`
    right on p0 in seed 0 and on p0, p1 in seed 1."""
    recipe, home, _ = swept
    run = next((home / "runs").glob("sweepy-*"))
    copy = tmp_path / "run"
    shutil.copytree(run / "students", copy / "students", ignore=shutil.ignore_patterns("adapter"))
    shutil.copy(run / "manifest.json", copy / "manifest.json")
    tiny = copy / "students/tiny"
    rewrite(tiny / "base", [False] * 8)
    rewrite(tiny / "reference/seed-0/eval", [True] * 8)
    rewrite(tiny / "reference/seed-1/eval", [True] * 7)
    rewrite(tiny / "answer-only/seed-0/eval", [True] + [False] * 7)
    rewrite(tiny / "answer-only/seed-1/eval", [True, True] + [False] * 6)
    report = write_report(recipe, RunFolder(copy))
    results = json.loads((report / "results.json").read_text())
    got = {(c["a"], c["b"]): c for c in results["comparisons"]["tiny"]}
    assert list(got) == [
        ("reference", "answer-only"),
        ("reference", "base"),
        ("answer-only", "base"),
    ]
    # reference vs answer-only on p0..p6 (p7: seed 1 of reference lacks it), in quarters
    # d = 2*2 - 2*(2, 1, 0, 0, 0, 0, 0) = (0, 2, 4, 4, 4, 4, 4): mean 22/28 = 11/14; only the
    # all-plus and all-minus signs of the six nonzero reach |22|: p = 2/64. Interval: d as
    # fractions sum 5.5, squares 0.25 + 5 = 5.25, n' = 9: mean 0.6111, variance
    # 6.25/9 - 0.6111^2 = 0.32099, 1.96 sqrt(0.32099/9) = 0.37015 -> [0.2410, 0.9813]
    c = got[("reference", "answer-only")]
    assert (c["n"], c["seeds"], c["a_better"], c["b_better"]) == (7, [2, 2], 6, 0)
    assert (c["accuracy_a"], c["difference"]) == (1.0, pytest.approx(11 / 14))
    assert (c["p"], c["ci95"]) == (0.03125, [0.241, 0.9813])
    # reference vs base on p0..p6: d = 1 on all 7: p = 2/128; interval 7/9 +- 1.96 sqrt((8/9 -
    # 49/81)/9) = 0.7778 +- 0.3481, clipped at 1
    c = got[("reference", "base")]
    assert (c["n"], c["seeds"], c["a_better"], c["difference"]) == (7, [2, 1], 7, 1.0)
    assert (c["p"], c["ci95"]) == (0.015625, [0.4296, 1.0])
    # answer-only vs base on all 8: d = (1, 0.5, 0, ...), in halves (2, 1): signs give 3, 1,
    # -1, -3, p = 2/4; sum 1.5, squares 1.25, n' = 10: 0.15 +- 1.96 sqrt((2.25/10 - 0.0225)/10)
    c = got[("answer-only", "base")]
    assert (c["n"], c["accuracy_a"], c["difference"], c["a_better"]) == (8, 3 / 16, 3 / 16, 2)
    assert (c["p"], c["ci95"]) == (0.5, [-0.1289, 0.4289])
    # Holm over the 3: 0.015625 * 3 = 0.046875, 0.03125 * 2 = 0.0625, 0.5 * 1 = 0.5
    assert [c["p_holm"] for c in got.values()] == [0.0625, 0.046875, 0.5]
    assert [c["significant"] for c in got.values()] == [False, True, False]
    advice = results["recommendations"]["tiny"]
    assert advice["best"] == "reference" and advice["separated"] is False
    assert advice["within_noise"] == ["answer-only"] and advice["beyond_base_noise"] is True
    assert "Holm-adjusted p = 0.0625): treat the top configurations as tied" in advice["text"]
    assert (
        "+100.0 points, significant (paired test on 7 problems, Holm-adjusted p = 0.0469)"
        in (advice["text"])
    )
    text = (report / "report.md").read_text()
    assert "Holm's correction over all 3 comparisons of this student" in text
    for row in (
        "| `reference` vs `answer-only` | 7 | 100.0% vs 21.4% | +78.6 | [+24.1, +98.1] | 6 / 0 | "
        "0.0312 | 0.0625 | noise |",
        "| `reference` vs `base` | 7 | 100.0% vs 0.0% | +100.0 | [+43.0, +100.0] | 7 / 0 | "
        "0.0156 | 0.0469 | significant |",
        "| `answer-only` vs `base` | 8 | 18.8% vs 0.0% | +18.8 | [-12.9, +42.9] | 2 / 0 | 0.5 | "
        "0.5 | noise |",
    ):
        assert row in text
    assert "| `reference` | " in text and "| 100.0% | [" in text, "the run table is still there"


def test_report_plots_are_pngs_with_the_expected_series(swept):
    from factory.plots import accuracy_by_level
    from factory.report import collect

    recipe, home, report = swept
    png = report / "tiny-granularity.png"
    data = png.read_bytes()
    assert data.startswith(PNG) and len(data) > 5_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (840, 504)
    results, bases = collect(RunFolder.of(home, recipe.name, recipe.hash))
    series = accuracy_by_level(results, bases["tiny"]["accuracy"], report / "again.png", "tiny")
    by_config = {r.config: r.accuracy for r in results}
    assert series == {
        "answer-only": [(None, by_config["answer-only"])],
        "reference": [(None, by_config["reference"])],
        "base model": [(None, bases["tiny"]["accuracy"])],
    }
    assert "![accuracy vs granularity](tiny-granularity.png)" in (report / "report.md").read_text()


def run_result(config, correct, total, level=None, fmt=None, teacher="t"):
    return RunResult(
        "s",
        config,
        teacher,
        fmt,
        level,
        [0],
        [correct / total],
        correct,
        total,
        60.0,
        3.0,
        40.0,
        0.99,
        ci95=[round(x, 4) for x in wilson_interval(correct, total)],
    )


def test_granularity_and_format_plots_draw_one_series_per_teacher_and_format(tmp_path):
    from factory.plots import accuracy_by_category, accuracy_by_level

    runs = [run_result(f"cot-L{lvl}", 10 * lvl, 100, lvl, "cot") for lvl in (1, 3, 6)]
    runs += [run_result("subq-L3", 25, 100, 3, "subq"), run_result("rar-L3", 28, 100, 3, "rar")]
    series = accuracy_by_level(runs, 0.05, tmp_path / "g.png", "s")
    assert series["t cot"] == [(1, 0.1), (3, 0.3), (6, 0.6)] and series["t subq"] == [(3, 0.25)]
    bars = accuracy_by_category(runs, "format", 0.05, tmp_path / "f.png", "s")
    assert bars == {
        "cot": [("level 3", 0.3)],
        "rar": [("level 3", 0.28)],
        "subq": [("level 3", 0.25)],
    }
    assert (tmp_path / "g.png").read_bytes().startswith(PNG)
    assert (tmp_path / "f.png").read_bytes().startswith(PNG)


def test_format_and_teacher_plots_hold_the_other_dimension_fixed(tmp_path):
    """Two teachers and two formats at one level (the paper's SVAMP study): the format plot
    compares one teacher's formats, the teacher plot one format's teachers; no run overwrites
    another at the same level."""
    from factory.plots import accuracy_by_category

    runs = [
        run_result("gpt-cot-L3", 42, 300, 3, "cot", teacher="gpt"),
        run_result("gpt-sym-L3", 37, 300, 3, "sym", teacher="gpt"),
        run_result("llama-cot-L3", 20, 300, 3, "cot", teacher="llama"),
    ]
    formats = accuracy_by_category(runs, "format", None, tmp_path / "f.png", "s")
    assert formats == {"cot": [("level 3", 42 / 300)], "sym": [("level 3", 37 / 300)]}
    teachers = accuracy_by_category(runs, "teacher", None, tmp_path / "t.png", "s")
    assert teachers == {"gpt": [("level 3", 42 / 300)], "llama": [("level 3", 20 / 300)]}
    runs.append(run_result("llama-sym-L3", 30, 300, 3, "sym", teacher="llama"))
    formats = accuracy_by_category(runs, "format", None, tmp_path / "f2.png", "s")
    assert formats["cot"] == [("gpt L3", 42 / 300), ("llama L3", 20 / 300)]
    assert formats["sym"] == [("gpt L3", 37 / 300), ("llama L3", 30 / 300)]
