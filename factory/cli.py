"""The `cot-factory` command. Heavy libraries load inside the commands, so `--help` is instant."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from factory import __version__

EPILOG = """\
state lives in the home directory: --home, else $COT_FACTORY_HOME, else ~/.cache/cot-factory
(registry/ for published repos, cache/ for teacher answers, runs/ for builds, models/).
"""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return args.command(args) or 0
    except Exception as err:
        if args.verbose or not _is_user_error(err):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


def _is_user_error(err: Exception) -> bool:
    """Errors that explain themselves (bad recipe, missing file, unreachable teacher)."""
    from factory.generate import GenerateError, TeacherError
    from factory.hub import HubError
    from factory.publish import PublishError
    from factory.recipe import RecipeError
    from factory.sources import SourceError

    known = (RecipeError, SourceError, GenerateError, TeacherError, HubError, PublishError)
    return isinstance(err, known)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cot-factory",
        description="Build chain-of-thought distillation datasets from a YAML recipe and "
        "publish them Hub-style.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cot-factory {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(name: str, func, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--home", type=Path, help="state directory (default: $COT_FACTORY_HOME)")
        sub.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
        sub.set_defaults(command=func)
        return sub

    sub = command("validate", cmd_validate, "check a recipe and show what it would build")
    sub.add_argument("recipe", type=Path)
    sub = command("build", cmd_build, "source -> generate -> verify -> build a dataset folder")
    sub.add_argument("recipe", type=Path)
    sub.add_argument("--publish", action="store_true", help="publish it to the registry after")
    sub = command("publish", cmd_publish, "publish a recipe's built dataset to the local registry")
    sub.add_argument("recipe", type=Path)
    sub = command("pull", cmd_pull, "get a published repo (dataset or model) from the registry")
    sub.add_argument("repo_id", help="namespace/name")
    sub.add_argument("--revision", help="branch, tag or commit (default: main)")
    sub.add_argument("--repo-type", choices=["dataset", "model", "space"])
    sub.add_argument("--to", type=Path, help="copy the files to this folder")
    return parser


def cmd_validate(args) -> None:
    from factory.generate import plan_configs
    from factory.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    print(f"{args.recipe}: valid recipe {recipe.name!r}, tag {recipe.tag}")
    print(f"dataset {recipe.dataset.repo_id}, configs:")
    for plan in plan_configs(recipe):
        shape = f"{plan.format} level {plan.level}" if plan.format else "from the source"
        print(f"  {plan.name:<24} teacher {plan.teacher:<16} {shape}")


def cmd_build(args) -> None:
    from factory.paths import home_dir
    from factory.pipeline import build_dataset
    from factory.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    result = build_dataset(recipe, home_dir(args.home))
    print(_summary(result))
    if args.publish:
        _publish(recipe, home_dir(args.home))


def cmd_publish(args) -> None:
    from factory.paths import home_dir
    from factory.recipe import load_recipe

    _publish(load_recipe(args.recipe), home_dir(args.home))


def _publish(recipe, home: Path) -> None:
    from factory.publish import publish_dataset

    published = publish_dataset(recipe, home)
    state = "new commit" if published.created else "unchanged, no new commit"
    print(
        f"published dataset {published.repo_id} @ {published.commit[:12]} ({state}), "
        f"tag {recipe.tag}"
    )
    print(f"  files: {published.path}")
    print(f"  load:  datasets.load_dataset({str(published.path)!r}, CONFIG)")


def cmd_pull(args) -> None:
    import shutil

    from factory.hub import LocalRegistry
    from factory.paths import home_dir, registry_dir

    registry = LocalRegistry(registry_dir(home_dir(args.home)))
    found = registry.resolve(args.repo_id, args.revision, args.repo_type)
    path = found.path
    if args.to:
        shutil.copytree(found.path, args.to, dirs_exist_ok=True)
        path = args.to
    print(f"{found.repo_type} {found.repo_id} @ {found.commit}")
    print(path)


def _summary(result) -> str:
    lines = [
        f"built {result.recipe.dataset.repo_id} ({result.recipe.tag}) in {result.seconds:.0f}s",
        f"{'config':<24} {'rows':>6} {'dropped':>8} {'teacher acc':>12} {'steps':>6} {'tokens':>7}",
    ]
    for name, s in result.stats.items():
        acc = "-" if s["teacher_accuracy"] is None else f"{100 * s['teacher_accuracy']:.1f}%"
        dropped = sum(s["dropped"].values())
        lines.append(
            f"{name:<24} {s['kept']:>6} {dropped:>8} {acc:>12} "
            f"{_or_dash(s['mean_steps']):>6} {_or_dash(s['mean_tokens']):>7}"
        )
    lines.append(f"dataset folder: {result.dataset_dir}")
    return "\n".join(lines)


def _or_dash(value) -> str:
    return "-" if value is None else str(value)


if __name__ == "__main__":
    sys.exit(main())
