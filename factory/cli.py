"""The `cot-factory` command: argument parsing, one call into `factory.run` per command, and
everything the user sees (this is the only module that prints). Heavy libraries load inside the
commands, so `--help` is instant."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

from factory import summaries
from factory.arguments import parser
from factory.secrets import format_exception, install_log_redaction, redact


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.command = globals()[f"cmd_{args.command}"]
    _set_up_logging(args.verbose)
    try:
        return args.command(args) or 0
    except Exception as err:  # everything leaves redacted: no key or token reaches the terminal
        if args.verbose or not _is_user_error(err):
            print(format_exception(err), end="", file=sys.stderr)
            return 1
        print(f"error: {redact(str(err))}", file=sys.stderr)
        return 2


def _set_up_logging(verbose: bool) -> None:
    """Progress bars and summaries for the user; other libraries' INFO chatter (every HTTP
    request of httpx, huggingface_hub, openai) only with -v."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    install_log_redaction()
    if not verbose:
        logging.getLogger().handlers[0].addFilter(_ours_or_warnings)
        warnings.filterwarnings("ignore", category=FutureWarning)  # not the user's to act on


def _ours_or_warnings(record: logging.LogRecord) -> bool:
    return record.name.split(".")[0] == "factory" or record.levelno >= logging.WARNING


def _is_user_error(err: Exception) -> bool:
    """Errors that explain themselves (bad recipe, missing file, unreachable teacher)."""
    from factory.cluster import ClusterError
    from factory.demo import DemoError
    from factory.generate import GenerateError
    from factory.hub import HubError
    from factory.paths import HomeEscape
    from factory.recipe import RecipeError
    from factory.run import RunError
    from factory.served import EndpointError
    from factory.sources import SourceError
    from factory.teachers import TeacherError

    known = (
        RecipeError,
        SourceError,
        GenerateError,
        TeacherError,
        HubError,
        RunError,
        HomeEscape,
        DemoError,
        ClusterError,
        EndpointError,
    )
    return isinstance(err, known)


# --- the commands -----------------------------------------------------------------------------


def _recipe(args):
    from factory.recipe import load_recipe
    from factory.secrets import watch

    recipe = load_recipe(args.recipe)
    watch(*(getattr(t, "api_key_env", None) for t in recipe.teacher))
    return recipe


def _home(args) -> Path:
    from factory.paths import home_dir

    return home_dir(args.home)


def cmd_validate(args) -> None:
    from factory.recipe import plan_configs, student_name
    from factory.train import check_training

    recipe = _recipe(args)
    print(f"{args.recipe}: valid recipe {recipe.name!r}, tag {recipe.tag}")
    print(f"dataset {recipe.dataset.repo_id}, configs:")
    for plan in plan_configs(recipe):
        shape = f"{plan.format} level {plan.level}" if plan.format else "from the source"
        print(f"  {plan.name:<24} teacher {plan.teacher:<16} {shape}")
    if recipe.students:
        check_training(recipe)
        names = ", ".join(student_name(s) for s in recipe.students)
        print(f"students: {names}; training options are valid SFTConfig/LoraConfig options")


def cmd_build(args) -> None:
    from factory.run import build_dataset

    recipe = _recipe(args)
    if args.preview is not None:
        from factory.preview import preview_text
        from factory.run import preview_dataset

        print(preview_text(preview_dataset(recipe, _home(args), args.preview)))
        return
    print(summaries.build_table(build_dataset(recipe, _home(args))))
    if args.publish:
        _print_dataset(recipe, _home(args), args.target)


def cmd_publish(args) -> None:
    _print_dataset(_recipe(args), _home(args), args.target)


def _print_dataset(recipe, home: Path, target: str | None) -> None:
    from factory.paths import registry_dir
    from factory.run import publish_dataset

    record = publish_dataset(recipe, home, target)
    print(summaries.published_line("dataset", record) + f", tag {recipe.tag}")
    print(summaries.load_hint(record, recipe.tag, registry_dir(home)))


def cmd_run(args) -> None:
    from factory.paths import REPORT, REPORT_RESULTS
    from factory.run import run_recipe

    recipe, home, timings = _recipe(args), _home(args), {}
    chosen = {"students": args.student, "configs": args.config, "target": args.target}
    done, entries = run_recipe(recipe, home, **chosen, timings=timings)
    print(summaries.build_table(done))
    print(summaries.published_line("dataset", done.manifest.dataset))
    print(summaries.students_table(entries))
    if entries:
        results = json.loads((done.run.report / REPORT_RESULTS).read_text())
        for student in dict.fromkeys(e.student for e in entries):
            print(summaries.comparisons_table(results, student))
            print(f"{student}: {results['recommendations'][student]['text']}")
        print(f"report: {done.run.report / REPORT}")
    print(summaries.timings_line(timings))
    if done.manifest.space:
        print(summaries.published_line("space", done.manifest.space))
        home_flag = f" --home {args.home}" if args.home else ""
        print(f"try the students side by side: cot-factory demo {args.recipe}{home_flag}")


def cmd_train(args) -> None:
    from factory.train import check_training

    recipe = _recipe(args)
    if args.accelerate:
        from factory.launch import launch_command, run_launch

        check_training(recipe)
        command = launch_command(args.recipe, args.accelerate, args.student, args.config, args.home)
        print(" ".join(command))
        if not args.dry_run:
            run_launch(command)
        return
    from factory.run import train_students

    for name, config, result in train_students(
        recipe, _home(args), students=args.student, configs=args.config
    ):
        loss = result.metrics.get("train_loss")
        print(f"{name} on {config}: loss {loss}, adapter {result.adapter_dir}")


def cmd_eval(args) -> int:
    from factory.evaluate import evaluate_recipe
    from factory.paths import RunFolder

    if not (args.model or args.adapter):
        print("error: give --model, --adapter, or both", file=sys.stderr)
        return 2
    recipe, home = _recipe(args), _home(args)
    if args.limit:
        recipe = recipe.model_copy(
            update={"eval": recipe.eval.model_copy(update={"limit": args.limit})}
        )
    named = args.adapter or [None]
    adapters = {_label(a or args.model): _adapter_folder(a, args, home) for a in named}
    if len(adapters) < len(named):
        print("error: two --adapter values end in the same name", file=sys.stderr)
        return 2
    root = RunFolder.of(home, recipe.name, recipe.hash).root / "evals"
    if args.out and len(adapters) == 1:
        outs = {label: Path(args.out) for label in adapters}
    else:
        outs = {label: Path(args.out or root) / label for label in adapters}
    for label, metrics in evaluate_recipe(recipe, args.model, adapters, outs, home).items():
        print(summaries.accuracy_line(label, metrics))
        print(f"predictions: {outs[label]}")
    return 0


def _label(adapter_or_model: str) -> str:
    return Path(str(adapter_or_model)).name


def _adapter_folder(adapter: str | None, args, home: Path) -> Path | None:
    """An `--adapter` as a folder: itself, or the published repo it names, pulled."""
    if adapter is None or Path(adapter).is_dir():
        return adapter and Path(adapter)
    from factory.hub import make_target

    return make_target(args.target, home).pull(adapter, args.revision, "model").path


def cmd_sweep(args) -> None:
    from factory.run import sweep

    filters = {"students": args.student, "configs": args.config, "seeds": args.seeds}
    out = sweep(_recipe(args), _home(args), **filters, ray=args.ray, gpus=args.gpus_per_run)
    _print_report(out)


def cmd_report(args) -> None:
    from factory.run import built, publish_report

    recipe, home = _recipe(args), _home(args)
    if args.publish:
        _print_report(publish_report(recipe, home, args.target))
        manifest = built(recipe, home).manifest
        print(summaries.published_line("dataset results", manifest.results))
        if manifest.space:
            print(summaries.published_line("space", manifest.space))
        return
    from factory.report import write_report

    _print_report(write_report(recipe, built(recipe, home).run))


def _print_report(out: Path) -> None:
    from factory.paths import REPORT, REPORT_RESULTS

    results = json.loads((out / REPORT_RESULTS).read_text())
    for student, advice in results["recommendations"].items():
        print(f"{student}: {advice['text']}")
    print(f"report: {out / REPORT}")


def cmd_space_build(args) -> None:
    from factory.run import publish_space, space_folder

    recipe, home = _recipe(args), _home(args)
    target = args.target or recipe.target
    print(f"space folder: {space_folder(recipe, home, target)}")
    if args.publish:
        print(summaries.published_line("space", publish_space(recipe, home, target)))


def cmd_demo(args) -> int:
    from factory.demo import run_demo

    folder = args.source
    if folder.is_file():
        from factory.recipe import load_recipe
        from factory.run import space_folder

        folder = space_folder(load_recipe(folder), _home(args), "local")
    print(f"opening the demo on http://127.0.0.1:{args.port} (Ctrl+C to stop)", flush=True)
    return run_demo(folder, args.port)


def cmd_pull(args) -> None:
    from factory.hub import make_target

    found = make_target(args.target, _home(args)).pull(
        args.repo_id, args.revision, args.repo_type, args.to
    )
    print(f"{found.repo_type} {found.repo_id} @ {found.commit}")
    print(found.path)


def cmd_reproduce(args) -> None:
    from factory.run import reproduce

    print(
        summaries.reproduction_table(
            reproduce(args.repo_id, args.revision, args.target, _home(args))
        )
    )


if __name__ == "__main__":
    sys.exit(main())
