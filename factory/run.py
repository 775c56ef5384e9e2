"""The pipeline, top to bottom: the one module that strings the stages together.

    build_dataset    source -> generate -> verify -> build, into the run folder   (build)
    publish_dataset  the dataset folder -> its repo, tagged with the recipe hash   (publish)
    run_recipe       build and publish, distill every student on every config,
                     then build and publish the Space                               (run)
    distill          train + evaluate one student on one config, release, publish
    sweep            train + evaluate every student x config x seed, report        (sweep)
    publish_report   the report in a new dataset commit, and the Space             (report)
    reproduce        a published student retrained from what its repo records      (reproduce)

Only this module writes the run manifest (`factory.manifest`) and calls publishing
(`factory.hub`). Stages never call each other; they meet here.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from factory.evaluate import evaluated
from factory.files import write_jsonl
from factory.manifest import Manifest, Record, StudentEntry
from factory.paths import ADAPTER_META, EVAL_METRICS, RECIPE_COPY, RunFolder, cache_path
from factory.recipe import Recipe, RecipeError, student_name

log = logging.getLogger(__name__)


class RunError(RuntimeError):
    """A step that cannot run yet (nothing built, nothing to train), with what to do."""


@dataclass(frozen=True)
class Built:
    """A finished build: its recipe, run folder and manifest."""

    recipe: Recipe
    run: RunFolder
    manifest: Manifest
    seconds: float


# --- the dataset ------------------------------------------------------------------------------


def build_dataset(recipe: Recipe, home: Path) -> Built:
    """source -> generate -> verify -> build, each stage's output kept in the run folder. The
    traces stream from the cache through verification and decontamination into the dataset's
    shards and the traces file: memory holds the problems and counts, not traces or rows."""
    from factory.build import build
    from factory.contamination import index_for, mark
    from factory.sources import load_problems

    start, run = time.perf_counter(), RunFolder.of(home, recipe.name, recipe.hash)
    run.root.mkdir(parents=True, exist_ok=True)
    if recipe.path:
        shutil.copyfile(recipe.path, run.root / RECIPE_COPY)
    problems = _located(load_problems, recipe)
    for split, items in problems.items():
        write_jsonl(run.problems(split), (p.to_dict() for p in items))  # a line at a time
    log.info("source: %s", ", ".join(f"{len(v)} {k}" for k, v in problems.items()))
    contamination = recipe.cot.decontaminate
    traces = _verified_traces(recipe, problems["train"], home)
    traces = mark(traces, index_for(contamination, problems), contamination.action)
    stats = build(recipe, problems, traces, run.dataset, run.traces)
    seconds = time.perf_counter() - start
    source = {s: {"kept": len(v), "skipped": problems.skipped[s]} for s, v in problems.items()}
    manifest = Manifest.rebuilt(run.manifest, recipe, stats, seconds, source)
    return Built(recipe, run, manifest, seconds)


def _verified_traces(recipe: Recipe, train: list, home: Path):
    """Every teacher's traces, verified, through the cache; sampling teachers are asked again
    until `cot.samples` traces verify per problem and config, or `cot.max_attempts` run out
    (each round reads back only the pairs it asked again). Everything is asked first; the
    traces are a `Stream`, read from the cache and verified afresh each time it is iterated."""
    from factory.cache import GenerationCache
    from factory.generate import Stream, Work, ask, generate, more_attempts, sampled
    from factory.verify import verified

    path, attempts, warned = cache_path(home), {}, set()

    def read(source, pairs=None):
        with GenerationCache(path) as cache:
            work = Work(recipe, train, cache, home, attempts, pairs, warned)
            yield from verified(source(work), recipe.source.task, recipe.cot.drop)

    with GenerationCache(path) as cache:
        ask(Work(recipe, train, cache, home, attempts))
        pairs = None
        while more := more_attempts(recipe, read(sampled, pairs), attempts):
            attempts.update(more)
            pairs = set(more)
            ask(Work(recipe, train, cache, home, attempts, pairs))
    return Stream(lambda: read(generate))


def _located(load_problems, recipe: Recipe):
    """The source's problems; a source error names the recipe line and key that point at it."""
    from factory.recipe.where import dotted
    from factory.sources import SourceError

    try:
        return load_problems(recipe.source, recipe.dataset)
    except SourceError as err:
        if err.key is None or recipe.path is None:
            raise
        raise SourceError(f"{recipe.where(err.key)}: {dotted(err.key)}: {err}", err.key) from None


def built(recipe: Recipe, home: Path) -> Built:
    """The finished build of this recipe, or a RunError saying how to make it."""
    run = RunFolder.of(home, recipe.name, recipe.hash)
    manifest = Manifest.load(run.manifest) if (run.dataset / "README.md").is_file() else None
    if manifest is None:
        raise RunError(
            f"no built dataset for recipe {recipe.name} ({recipe.tag}) in {run.root}: "
            f"run `cot-factory build {recipe.path or recipe.name}` first"
        )
    return Built(recipe, run, manifest, manifest.build_seconds)


def publish_dataset(recipe: Recipe, home: Path, target: str | None = None):
    """Publish the built dataset folder as its repo's commit tagged `recipe-{hash}`."""
    done, target = built(recipe, home), target or recipe.target
    repo, what = (recipe.dataset.repo_id, "dataset"), f"dataset of recipe {recipe.name}"
    record = _publish(recipe, home, target, done.run.dataset, repo, recipe.tag, what)
    _update(done.run, dataset=record)
    return record


def preview_dataset(recipe: Recipe, home: Path, problems: int):
    """Ask every teacher about the first `problems` training problems of each config (one
    sample, through the cache, so the full build reuses each answer), verify the answers and
    estimate the full build (`preview.Preview`). Writes no run folder or dataset."""
    from factory.preview import preview_recipe, summarize
    from factory.sources import load_problems

    if problems < 1:
        raise RunError(f"--preview needs at least one problem, got {problems}")
    train = _located(load_problems, recipe)["train"]
    traces = _verified_traces(preview_recipe(recipe), train[:problems], home)
    return summarize(recipe, traces, len(train), problems)


def _publish(recipe: Recipe, home: Path, target: str, folder: Path, repo: tuple, tag, what: str):
    """Publish `folder` as `repo` (repo_id, repo_type) to the target; returns its record."""
    from factory.hub import make_target

    message, private = f"cot-factory: {what} ({recipe.tag})", recipe.dataset.private
    published = make_target(target, home).publish(
        folder, *repo, tag=tag, message=message, private=private
    )
    return Record.of(published, target, tag)


def _update(run: RunFolder, **fields) -> Manifest:
    manifest = Manifest.load(run.manifest).model_copy(update=fields)
    manifest.save(run.manifest)
    return manifest


# --- students ---------------------------------------------------------------------------------


def run_recipe(
    recipe: Recipe,
    home: Path,
    *,
    students: list[str] | None = None,
    configs: list[str] | None = None,
    target: str | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[Built, list[StudentEntry]]:
    """The whole pipeline: build and publish the dataset, distill, card and publish every chosen
    student on every chosen config, write the report, then build and publish the Space.
    `timings`, when given, gets the seconds of each stage: models (made ready offline), dataset,
    training, evaluation, publishing, report, space."""
    from factory.report import write_report
    from factory.train import check_training

    check_training(recipe)
    target = target or recipe.target
    chosen = _students(recipe, students)
    with _timed(timings, "models"):
        _models_ready(recipe, chosen, home)
    with _timed(timings, "dataset"):
        done = build_dataset(recipe, home)
    with _timed(timings, "publishing"):
        publish_dataset(recipe, home, target)
    seed, wanted = recipe.train.seeds[0], _configs(recipe, done.manifest, configs)
    runs = [(student_name(student), config, seed) for student in chosen for config in wanted]
    train_then_evaluate(recipe, built(recipe, home), runs, home, timings=timings)
    with _timed(timings, "publishing"):
        results = [distill(recipe, s, config, home, target) for s in chosen for config in wanted]
    if results:
        with _timed(timings, "report"):
            write_report(recipe, done.run)
        with _timed(timings, "space"):
            publish_space(recipe, home, target)
    return built(recipe, home), results


@contextmanager
def _timed(timings: dict[str, float] | None, stage: str):
    """Add the seconds the block takes to `timings[stage]` (when there are timings)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def _models_ready(recipe: Recipe, students: list, home: Path) -> None:
    """Every in-process teacher's model and every student's, resolved (an offline alias is
    converted to safetensors under the home once)."""
    from factory.models import resolve_model

    local = [spec.model for spec in recipe.teacher if spec.backend == "transformers"]
    for model in dict.fromkeys([*local, *(student.model for student in students)]):
        resolve_model(model, home)


def _students(recipe: Recipe, names: list[str] | None) -> list:
    chosen = [s for s in recipe.students if not names or student_name(s) in names]
    if not chosen:
        known = ", ".join(student_name(s) for s in recipe.students) or "none"
        raise RecipeError(f"{recipe.path}: no student to train (students: {known})")
    return chosen


def _configs(recipe: Recipe, manifest: Manifest, names: list[str] | None) -> list[str]:
    """The configs to train on: those named (or the recipe's), less those without rows."""
    wanted = names or recipe.train.configs or manifest.trainable()
    for config in set(wanted) - set(manifest.trainable()):
        log.warning("config %s has no training rows: no student is trained on it", config)
    return [config for config in wanted if config in manifest.trainable()]


def distill(recipe: Recipe, student, config: str, home: Path, target: str) -> StudentEntry:
    """Train one student on one config, evaluate it against its base, release and publish it."""
    from factory.release import release_adapter

    done, seed, name = built(recipe, home), recipe.train.seeds[0], student_name(student)
    dataset = done.manifest.dataset
    if dataset is None:
        raise RunError(f"publish the dataset of {recipe.path} before its students")
    base, trained, distilled = train_and_evaluate(recipe, student, config, seed, done, home)
    repo_id = recipe.adapter_repo(student, config)
    release = release_adapter(
        recipe,
        student,
        config,
        done.run.release("model", repo_id),
        trained=trained,
        evaluation=done.run.evaluation(name, config, seed),
        base=base,
        distilled=distilled,
        stats=done.manifest.configs[config],
        seed=seed,
        repo_id=repo_id,
        dataset_revision=dataset.commit,
        example_question=test_problems(done)[0].question,
        target=target,
        home=home,
    )
    what = f"{name} distilled on {config}"
    record = _publish(recipe, home, target, release, (repo_id, "model"), recipe.tag, what)
    entry = StudentEntry.of(name, config, seed, release, record, base, distilled)
    Manifest.load(done.run.manifest).with_student(entry).save(done.run.manifest)
    return entry


def train_then_evaluate(
    recipe: Recipe, done: Built, runs: list[tuple], home: Path, bar=None, timings=None
):
    """Train every (student name, config, seed) of `runs` still untrained, one after another,
    then evaluate each student's base and trained runs still unevaluated in one pass
    (`evaluate_adapters`: mixed-adapter batches on a GPU, each student merged on a CPU), each
    bounded by `answer_bounds`. `bar` counts runs trained; `timings` gets the seconds of training
    and of evaluation."""
    from factory.evaluate import evaluated_together
    from factory.files import locked

    for name, config, seed in runs:
        if bar is not None:
            bar.set_postfix_str(f"{name} {config} seed {seed}")
        with _timed(timings, "training"):
            _trained(recipe, _student(recipe, name), config, seed, done, home)
        if bar is not None:
            bar.update()
    test, task, spec = test_problems(done), recipe.source.task, recipe.eval
    for student in recipe.students:
        name = student_name(student)
        mine = [(config, seed) for n, config, seed in runs if n == name]
        if not mine:
            continue
        bounds = answer_bounds(recipe, done, student, home)
        together = {f"{name} base": (None, done.run.base_eval(name))}
        limits = {f"{name} base": bounds[None]}
        for config, seed in mine:
            label, adapter = f"{name} {config} seed {seed}", done.run.training(name, config, seed)
            together[label] = (adapter / "adapter", done.run.evaluation(name, config, seed))
            limits[label] = bounds[config]
        lock = locked(done.run.base_eval(name).parent / ".base.lock")
        with lock, _timed(timings, "evaluation"):
            evaluated_together(student.model, together, test, task, spec, home, limits)


def answer_bounds(recipe: Recipe, done: Built, student, home: Path) -> dict:
    """config -> the answer bound of a student trained on it (`evaluate.answer_bound` of its
    longest training completion, in the student's tokens), and None -> that of the base model:
    the largest, so the base may write as long as any student. Unused where the recipe sets
    `eval.max_new_tokens`."""
    from factory.evaluate import answer_bound, longest_completions

    if recipe.eval.max_new_tokens:
        return dict.fromkeys([None, *done.manifest.trainable()], recipe.eval.max_new_tokens)
    from transformers import AutoTokenizer

    from factory.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(student.model, home))
    longest = longest_completions(done.run.dataset, done.manifest.trainable(), tokenizer)
    bounds = {config: answer_bound(tokens) for config, tokens in longest.items()}
    return {None: max(bounds.values(), default=None), **bounds}


def _student(recipe: Recipe, name: str):
    return next(s for s in recipe.students if student_name(s) == name)


def _trained(recipe: Recipe, student, config: str, seed: int, done: Built, home: Path):
    """The TrainResult of a run, trained first if it is not, under the run's lock (two sweeps
    sharing a home never train it twice)."""
    from factory.files import locked
    from factory.train import train_student

    training = done.run.training(student_name(student), config, seed)
    with locked(training.parent / f".{training.name}.lock"):
        return train_student(recipe, student, config, done.run.dataset, training, home, seed)


def train_and_evaluate(recipe: Recipe, student, config: str, seed: int, done: Built, home: Path):
    """(base metrics, TrainResult, distilled metrics); finished work is reused. A run holds a
    lock while it works, so two sweeps sharing a home never train it twice."""
    from factory.files import locked

    name, test = student_name(student), test_problems(done)
    base_out, out = done.run.base_eval(name), done.run.evaluation(name, config, seed)
    task, spec = recipe.source.task, recipe.eval
    from factory.scores import read_metrics

    owed = read_metrics(base_out) is None or read_metrics(out) is None  # else nothing to bound
    bounds = answer_bounds(recipe, done, student, home) if owed else {}
    with locked(base_out.parent / ".base.lock"):
        args = (test, task, spec, base_out, home, f"{name} base", bounds.get(None))
        base = evaluated(student.model, None, *args)
    trained = _trained(recipe, student, config, seed, done, home)
    with locked(base_out.parent / ".base.lock"):
        args = (test, task, spec, out, home, f"{name} {config} seed {seed}", bounds.get(config))
        distilled = evaluated(student.model, trained.adapter_dir, *args)
    return base, trained, distilled


def test_problems(done: Built) -> list:
    """The held-out problems students are evaluated on."""
    from factory.sources import read_problems

    if not done.run.problems("test").is_file():
        raise RunError(
            f"{done.recipe.path}: no test split to evaluate on: give the source a `test` split "
            "or set `dataset.test_size`"
        )
    return read_problems(done.run.problems("test"))


def train_students(recipe: Recipe, home: Path, *, students=None, configs=None) -> list:
    """Train (no evaluation, no publishing) the chosen students on the built dataset; returns
    (student name, config, TrainResult) for each."""
    from factory.train import check_training, train_student

    check_training(recipe)
    done, seed, trained = built(recipe, home), recipe.train.seeds[0], []
    for student in _students(recipe, students):
        name = student_name(student)
        for config in _configs(recipe, done.manifest, configs):
            out = done.run.training(name, config, seed)
            result = train_student(recipe, student, config, done.run.dataset, out, home, seed)
            trained.append((name, config, result))
    return trained


# --- sweeps, reports, the Space ---------------------------------------------------------------


def sweep(
    recipe: Recipe, home: Path, *, students=None, configs=None, seeds=None, ray=None, gpus=None
) -> Path:
    """Train and evaluate every chosen student x config x seed still owed (a killed run resumes
    from its checkpoint), one after another or as Ray tasks (`ray`: `local`, `auto` or an
    address; `gpus` per run), then write the report; returns the report folder."""
    from factory.report import write_report
    from factory.train import check_training

    check_training(recipe)
    done = build_dataset(recipe, home)
    runs = [
        (student_name(student), config, seed)
        for student in _students(recipe, students)
        for config in _configs(recipe, done.manifest, configs)
        for seed in seeds or recipe.train.seeds
    ]
    owed = [run for run in runs if not _finished(done, *run)]
    log.info("sweep: %d runs, %d done, %d to go", len(runs), len(runs) - len(owed), len(owed))
    with tqdm(total=len(runs), initial=len(runs) - len(owed), desc="sweep", unit="run") as bar:
        labels = [f"{name} {config} seed {seed}" for name, config, seed in owed]
        if ray:
            from factory.cluster import run_all

            args = [(recipe, home, *run) for run in owed]
            kwargs = {"address": ray, "gpus": gpus, "cpus": 1, "home": home}
            run_all(sweep_run, args, labels, **kwargs, done=lambda _: bar.update())
        else:
            bar.set_description("sweep (training)")
            train_then_evaluate(recipe, done, owed, home, bar)
    return write_report(recipe, done.run)


def sweep_run(recipe: Recipe, home: Path, student: str, config: str, seed: int) -> None:
    """One run of a sweep, wherever it runs: train and evaluate `student` on `config`."""
    done = built(recipe, home)
    train_and_evaluate(recipe, _student(recipe, student), config, seed, done, home)


def _finished(done: Built, name: str, config: str, seed: int) -> bool:
    from factory.scores import read_metrics
    from factory.training_record import finished

    trained = finished(done.run.training(name, config, seed)) is not None
    return trained and read_metrics(done.run.evaluation(name, config, seed)) is not None


def publish_report(recipe: Recipe, home: Path, target: str | None = None) -> Path:
    """Write the report, publish it as a new (untagged) commit of the dataset whose card gains
    a Results section citing the tagged commit it describes, and rebuild the Space."""
    from factory.release import release_results
    from factory.report import write_report

    done, target = built(recipe, home), target or recipe.target
    if done.manifest.dataset is None or done.manifest.dataset.target != target:
        publish_dataset(recipe, home, target)
        done = built(recipe, home)
    out = write_report(recipe, done.run)
    repo_id = recipe.dataset.repo_id
    folder = release_results(
        done.run.dataset, out, done.run.release("dataset", repo_id), done.manifest.dataset.commit
    )
    what = f"results of recipe {recipe.name}"
    _update(
        done.run, results=_publish(recipe, home, target, folder, (repo_id, "dataset"), None, what)
    )
    if done.manifest.students:
        publish_space(recipe, home, target)
    return out


def space_folder(recipe: Recipe, home: Path, target: str) -> Path:
    """Write the Space folder of the recipe's published students (paths or Hub ids by target)."""
    from factory.space import build_space

    done = built(recipe, home)
    return build_space(recipe, done.manifest, done.run, home, target)


def publish_space(recipe: Recipe, home: Path, target: str | None = None):
    """Build the Space folder and publish it as the recipe's Space repo."""
    target = target or recipe.target
    folder, repo = space_folder(recipe, home, target), (recipe.space_repo(), "space")
    record = _publish(recipe, home, target, folder, repo, recipe.tag, f"demo of {recipe.name}")
    _update(built(recipe, home).run, space=record)
    return record


# --- reproducing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reproduction:
    adapter: object  # hub.Published
    dataset: object
    meta: dict
    published: dict  # the metrics in the repo's eval_results.json
    reproduced: dict
    out: Path

    @property
    def difference(self) -> float:
        return self.reproduced["accuracy"] - self.published["accuracy"]


def reproduce(repo_id: str, revision: str | None, target: str, home: Path) -> Reproduction:
    """Retrain and re-evaluate the student published as `repo_id` from what its repo records:
    the recipe, the dataset repo and exact revision, the config and the seed."""
    from factory.hub import HubError, make_target
    from factory.paths import reproductions_dir
    from factory.recipe import load_recipe
    from factory.shards import held_out_problems
    from factory.train import train_student

    source = make_target(target, home)
    adapter = source.pull(repo_id, revision, "model")
    meta, published = (
        _published_json(adapter.path, n, repo_id) for n in (ADAPTER_META, EVAL_METRICS)
    )
    recipe = load_recipe(adapter.path / RECIPE_COPY, inputs=False)
    student = next((s for s in recipe.students if student_name(s) == meta["student"]), None)
    if student is None:
        raise HubError(f"{repo_id}: its recipe has no student named {meta['student']!r}")
    dataset = source.pull(meta["dataset_repo"], meta["dataset_revision"], "dataset")
    out = reproductions_dir(home, repo_id, adapter.commit)
    seed = meta.get("seed", recipe.train.seeds[0])
    trained = train_student(recipe, student, meta["config"], dataset.path, out, home, seed)
    problems, label = held_out_problems(dataset.path), f"reproduce {meta['config']}"
    bound = published.get("max_new_tokens")  # the answer bound the published run had
    args = (recipe.source.task, recipe.eval, out / "eval", home, label, bound)
    reproduced = evaluated(student.model, trained.adapter_dir, problems, *args)
    return Reproduction(adapter, dataset, meta, published, reproduced, out)


def _published_json(folder: Path, name: str, repo_id: str) -> dict:
    from factory.hub import HubError

    if not (folder / name).is_file():
        raise HubError(f"{repo_id} has no {name}: it was not published by `cot-factory run`")
    return json.loads((folder / name).read_text())
