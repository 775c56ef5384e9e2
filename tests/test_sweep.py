"""Sweeps and reports on a tiny model: every run trained and evaluated, a re-run trains nothing,
the report's tables and plots match the runs, recommendations say when differences are noise."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml
from test_train import toy_recipe

from factory.paths import TRAINING_METRICS as DONE
from factory.paths import RunFolder
from factory.recipe import load_recipe
from factory.report import RunResult, recommend
from factory.run import sweep
from factory.stats import wilson_interval

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


def test_rerun_trains_nothing(swept, tmp_path):
    recipe, home, _ = swept
    run = next((home / "runs").glob("sweepy-*"))
    stamps = {p: p.stat().st_mtime for p in run.glob(f"students/*/*/seed-*/{DONE}")}
    out = subprocess.run(
        [sys.executable, "-m", "factory.cli", "sweep", str(recipe.path), "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "4 runs, 4 done, 0 to go" in out.stderr
    assert {p: p.stat().st_mtime for p in stamps} == stamps
    assert "tiny: `" in out.stdout and "report: " in out.stdout


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
        assert entry["ci95"] == [round(x, 4) for x in wilson_interval(correct, total)]
        row = next(
            line for line in text.splitlines() if line.startswith(f"| `{entry['config']}` |")
        )
        assert f"| {100 * correct / total:.1f}% |" in row
        assert f"[{100 * entry['ci95'][0]:.1f}%, {100 * entry['ci95'][1]:.1f}%]" in row
        tokens = stats[entry["config"]]["mean_tokens"]
        assert f"| {tokens:.1f} |" in row and "| 2 (±" in row
    base = json.loads((run / "students/tiny/base/eval_results.json").read_text())
    assert results["base"]["tiny"]["accuracy"] == base["accuracy"]
    assert f"Base model without distillation: {100 * base['accuracy']:.1f}%" in text
    assert "**Recommendation.**" in text


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


def test_recommendation_says_plainly_when_the_difference_is_noise():
    close = recommend([run_result("cot-L1", 50, 300), run_result("cot-L3", 53, 300)])
    assert close["best"] == "cot-L3" and close["separated"] is False
    assert "not larger than the sampling noise" in close["text"]
    clear = recommend([run_result("cot-L1", 20, 300), run_result("cot-L3", 90, 300)])
    assert clear["separated"] is True and "larger than the sampling noise" in clear["text"]
    assert re.search(r"by 23\.3 points", clear["text"])


def test_recommendation_names_ties_the_noise_band_and_the_lift_over_base():
    runs = [
        run_result("cot-L2", 42, 300),
        run_result("cot-L3", 42, 300),
        run_result("cot-L1", 35, 300),
        run_result("answer-only", 10, 300),
    ]
    base = {"accuracy": 6 / 300, "ci95": [round(x, 4) for x in wilson_interval(6, 300)]}
    advice = recommend(runs, base)
    assert advice["best"] == "cot-L2" and advice["tied"] == ["cot-L3"]
    assert advice["runner_up"] == "cot-L1" and advice["margin"] == round(7 / 300, 4)
    assert advice["within_noise"] == ["cot-L1"] and advice["clearly_below"] == ["answer-only"]
    assert advice["lift_over_base"] == 0.12 and advice["beyond_base_noise"] is True
    assert advice["text"].startswith("`cot-L2` and `cot-L3` tie at 14.0% and beat the runner-up")
    assert "Over the untrained base model (2.0%): +12.0 points, beyond" in advice["text"]
    only_ties = recommend(runs[:2])
    assert only_ties["text"] == "`cot-L2` and `cot-L3` tie at 14.0%: nothing separates them."


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
