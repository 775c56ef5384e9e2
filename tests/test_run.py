"""The orchestrator (`factory.run`) on a tiny model: builds are named by what they are made of,
outputs stay as training wrote them, published cards cite what they describe, tags never move."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from huggingface_hub import DatasetCard, ModelCard
from test_train import toy_recipe

from factory.hub import make_target
from factory.manifest import Manifest
from factory.recipe import load_recipe
from factory.run import publish_report, run_recipe, sweep

pytestmark = pytest.mark.slow


def with_env_teacher_file(tmp_path: Path, model_dir: Path) -> Path:
    """A toy recipe whose training problems come from the file `${PROBLEMS}` names."""
    path = toy_recipe(tmp_path, model_dir, name="envy")
    recipe = yaml.safe_load(path.read_text())
    recipe["source"] = {
        "kind": "files",
        "train": "${PROBLEMS}",
        "test": str(tmp_path / "test.jsonl"),
    }
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    rows = [{"question": f"What is {a} + {a}?", "answer": str(2 * a)} for a in range(1, 9)]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    for name, offset in (("a.jsonl", 10), ("b.jsonl", 20)):
        more = [
            {"question": f"What is {a} + {offset}?", "answer": str(a + offset)} for a in range(8)
        ]
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in more))
    return path


def test_two_values_of_a_variable_are_two_builds_never_one_reused(
    tmp_path, tiny_model_dir, home, monkeypatch
):
    """`PROBLEMS=a run` then `PROBLEMS=b run`: B gets its own run folder, training and tag, and
    its card cites B's dataset commit (it used to reuse A's finished training)."""
    path = with_env_teacher_file(tmp_path, tiny_model_dir)
    entries, manifests = {}, {}
    for name in ("a", "b"):
        monkeypatch.setenv("PROBLEMS", str(tmp_path / f"{name}.jsonl"))
        recipe = load_recipe(path)
        done, (entries[name],) = run_recipe(recipe, home)
        manifests[name] = done.manifest
    assert manifests["a"].recipe_hash != manifests["b"].recipe_hash
    assert manifests["a"].dataset.commit != manifests["b"].dataset.commit
    for name in ("a", "b"):
        card = ModelCard.load(Path(entries[name].release) / "README.md")
        assert card.data.eval_results[0].dataset_revision == manifests[name].dataset.commit
    runs = sorted(p.name for p in (home / "runs").iterdir())
    assert len(runs) == 2 and all((home / "runs" / r / "students").is_dir() for r in runs)


@pytest.fixture(scope="module")
def published(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("published")
    home = tmp / "home"
    recipe = load_recipe(toy_recipe(tmp, tiny_model_dir, name="carded"))
    done, (entry,) = run_recipe(recipe, home)
    return recipe, home, done, entry


def test_the_training_output_is_left_as_training_wrote_it(published):
    recipe, home, done, entry = published
    trained = done.run.training("tiny", "answer-only", 0)
    adapter = trained / "adapter"
    assert (adapter / "training_args.bin").is_file(), "the Trainer's own record stays"
    assert (
        not (adapter / "eval_results.json").exists() and not (adapter / "cot_factory.json").exists()
    )
    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base).is_dir(), "the training output names the base it trained on"
    release = Path(entry.release)
    for name in ("README.md", "recipe.yaml", "eval_results.json", "predictions.jsonl"):
        assert (release / name).is_file(), name
    assert (release / "cot_factory.json").is_file() and not (release / "training_args.bin").exists()
    assert (release / "README.md").read_text() != (adapter / "README.md").read_text()


def test_the_card_records_the_settings_training_used_and_how_to_reproduce(published):
    recipe, home, done, entry = published
    card = ModelCard.load(Path(entry.release) / "README.md")
    recorded = json.loads(
        (done.run.training("tiny", "answer-only", 0) / "training_config.json").read_text()
    )
    for key in ("learning_rate", "num_train_epochs", "per_device_train_batch_size", "seed"):
        assert f"`{key}={recorded['sft'][key]}`" in card.text, key
    assert f"`r={recorded['lora']['r']}`" in card.text
    assert f"cot-factory reproduce {entry.published.repo_id}\n" in card.text
    assert "cot-factory run recipe.yaml" not in card.text, "reproducing never republishes"
    metrics = json.loads(
        (done.run.training("tiny", "answer-only", 0) / "training_metrics.json").read_text()
    )
    evaluated = json.loads((Path(entry.release) / "eval_results.json").read_text())
    assert f"- **Precision**: {metrics['precision']} (the weights" in card.text
    assert (
        f"decoding in {evaluated['dtype']}, at most {evaluated['max_new_tokens']} new" in card.text
    )


def test_results_go_into_a_new_commit_and_the_tag_stays(published, tiny_model_dir):
    """`report --publish` adds a commit whose card cites the tagged one; the next `run` makes no
    dataset commit and moves no tag (it used to move `recipe-<hash>` back and forth)."""
    recipe, home, done, _ = published
    registry = make_target("local", home)
    tagged = done.manifest.dataset.commit
    sweep(recipe, home)
    publish_report(recipe, home)
    manifest = Manifest.load(done.run.manifest)
    results = manifest.results.commit
    assert results != tagged and manifest.dataset.commit == tagged
    assert registry.pull(recipe.dataset.repo_id, recipe.tag, "dataset").commit == tagged
    head = registry.pull(recipe.dataset.repo_id, None, "dataset")
    assert head.commit == results
    card = DatasetCard.load(Path(head.path) / "README.md")
    assert f"Measured on the rows of commit `{tagged}`" in card.text
    run_recipe(recipe, home)
    assert registry.pull(recipe.dataset.repo_id, recipe.tag, "dataset").commit == tagged
    assert registry.pull(recipe.dataset.repo_id, None, "dataset").commit == results
    assert Manifest.load(done.run.manifest).dataset.commit == tagged


def test_run_trains_evaluates_cards_and_publishes(published, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    recipe, home, done, entry = published
    assert entry.published.repo_id == "local/tiny-carded-answer-only"
    assert len(entry.published.commit) == 40
    release = Path(entry.published.path)
    card = ModelCard.load(release / "README.md")
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "text-generation"
    assert card.data.base_model == str(tiny_model_dir) and card.data.datasets == ["local/toy"]
    (result,) = card.data.eval_results
    assert (result.dataset_type, result.dataset_config) == ("local/toy", "problems")
    assert result.dataset_split == "test" and result.metric_type == "accuracy"
    assert result.dataset_revision == done.manifest.dataset.commit
    assert result.metric_value == round(entry.accuracy, 4)
    assert f"| {100 * entry.base_accuracy:.1f}% |" in card.text
    for name in ("recipe.yaml", "eval_results.json", "predictions.jsonl", "adapter_config.json"):
        assert (release / name).is_file(), name
    reloaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(release)
    )
    assert any("lora_A" in n for n, _ in reloaded.named_parameters())
    (recorded,) = Manifest.load(done.run.manifest).students
    assert (recorded.published.commit, recorded.accuracy) == (
        entry.published.commit,
        entry.accuracy,
    )

    _, (again,) = run_recipe(recipe, home)
    assert again.published.commit == entry.published.commit, "a re-run publishes nothing new"
    assert again.published.created is False


def test_eval_command_on_a_published_adapter(published, tiny_model_dir, tmp_path):
    recipe, home, done, entry = published

    def cot_factory_eval(*args):
        command = [sys.executable, "-m", "factory.cli", "eval", str(recipe.path), *args]
        return subprocess.run(
            [*command, "--home", str(home)], capture_output=True, text=True, timeout=300
        )

    out = cot_factory_eval(
        "--adapter", entry.published.repo_id, "--model", str(tiny_model_dir), "--out", str(tmp_path)
    )
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "eval_results.json").read_text())
    distilled = json.loads((Path(entry.release) / "eval_results.json").read_text())
    assert metrics == distilled, "the same adapter evaluates the same from the registry"
    assert f"accuracy {100 * metrics['accuracy']:.1f}%" in out.stdout
    trained = done.run.training("tiny", "answer-only", recipe.train.seeds[0]) / "adapter"
    two = cot_factory_eval(
        *("--adapter", entry.published.repo_id, "--adapter", str(trained), "--out", str(tmp_path))
    )
    assert two.returncode == 0, two.stderr
    for label in (entry.published.repo_id.split("/")[1], "adapter"):
        together = json.loads((tmp_path / label / "eval_results.json").read_text())
        assert together == distilled, f"{label}: evaluated beside another, it answers the same"
    assert two.stdout.count("accuracy") == 2
    missing = cot_factory_eval("--adapter", "local/none")
    assert missing.returncode == 2 and "local/none" in missing.stderr
    assert missing.stderr.count("\n") == 1
    neither = cot_factory_eval()
    assert neither.returncode == 2 and "give --model, --adapter, or both" in neither.stderr
