"""The command line's arguments: one sub-command per pipeline step. Each sets `command` to its
name; `factory.cli` runs `cmd_{name}`."""

from __future__ import annotations

import argparse
from pathlib import Path

from factory import __version__

EPILOG = """\
state lives in the home directory: --home, else $COT_FACTORY_HOME, else ~/.cache/cot-factory
(registry/ for published repos, cache/ for teacher answers, runs/ for builds, models/).
"""


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cot-factory",
        description="Chain-of-thought distillation from one YAML recipe: build verified CoT "
        "datasets, train and evaluate students, publish everything Hub-style, try them in a Space.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cot-factory {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--home", type=Path, help="state directory (default: $COT_FACTORY_HOME)")
        sub.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
        sub.set_defaults(command=name)
        return sub

    sub = command("validate", "check a recipe and show what it would build")
    sub.add_argument("recipe", type=Path)
    sub = command("build", "source -> generate -> verify -> build a dataset folder")
    sub.add_argument("recipe", type=Path)
    sub.add_argument("--publish", action="store_true", help="publish it after building")
    _target(sub, "where --publish publishes (default: the recipe's `target`, else local)")
    sub.add_argument(
        "--preview",
        type=int,
        metavar="N",
        help="ask the teachers about N problems per config only; print a sample per config and "
        "what the full build would ask and cost; build and publish nothing (answers are cached)",
    )
    sub = command("publish", "publish a recipe's built dataset to its target")
    sub.add_argument("recipe", type=Path)
    _target(sub, "where to publish (default: the recipe's `target`, else local)")
    sub = command(
        "run",
        "the whole pipeline: build and publish the dataset, then train, "
        "evaluate, card and publish every student on every config",
    )
    sub.add_argument("recipe", type=Path)
    _student_filters(sub)
    _target(sub, "where to publish (default: the recipe's `target`, else local)")
    sub = command("train", "train students on the built dataset (no evaluation)")
    sub.add_argument("recipe", type=Path)
    _student_filters(sub)
    sub.add_argument(
        "--accelerate",
        metavar="CONFIG",
        help="launch through `accelerate launch` "
        "with recipes/accelerate/CONFIG.yaml (ddp, zero2, zero3, fsdp) or a file",
    )
    sub.add_argument("--dry-run", action="store_true", help="with --accelerate: print the command")
    sub = command("eval", "evaluate a model or adapter on a recipe's test split")
    sub.add_argument("recipe", type=Path)
    sub.add_argument(
        "--model", help="base model (Hub id, path, smollm2-135m); default: the adapter's base"
    )
    sub.add_argument(
        "--adapter",
        action="append",
        help="adapter folder or published repo id; repeat it to evaluate several adapters of one "
        "base together (one mixed-adapter batch)",
    )
    sub.add_argument("--revision", help="revision of --adapter (of each, when repeated)")
    _target(sub, "where --adapter is published (default: local)", default="local")
    sub.add_argument("--limit", type=int, help="evaluate on the first N test problems")
    sub.add_argument(
        "--out", type=Path, help="where to write predictions and metrics (a folder per adapter)"
    )
    sub = command(
        "sweep",
        "train and evaluate every student x config x seed (resumes), then write the report",
    )
    sub.add_argument("recipe", type=Path)
    _student_filters(sub)
    sub.add_argument(
        "--seeds",
        type=lambda s: [int(x) for x in s.split(",")],
        help="comma-separated seeds (default: the recipe's train.seeds)",
    )
    sub.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run each run as a Ray task: on a local cluster started for the call, or on the "
        "cluster at ADDRESS (`auto`, `ray://host:port`); needs cot-factory[ray]",
    )
    sub.add_argument(
        "--gpus-per-run",
        type=float,
        metavar="N",
        help="with --ray: GPUs each run asks for where the cluster has GPUs (default 1)",
    )
    sub = command(
        "report",
        "write the report of a recipe's finished runs: tables, plots, a recommendation per student",
    )
    sub.add_argument("recipe", type=Path)
    sub.add_argument(
        "--publish",
        action="store_true",
        help="also put it in the dataset card and the Space, and republish both",
    )
    _target(sub, "where to republish (default: the recipe's `target`)")
    space = commands.add_parser(
        "space",
        help="the Gradio Space to try the students",
        description="the Gradio Space to try the students",
    )
    space_commands = space.add_subparsers(title="space commands", required=True, metavar="COMMAND")
    sub = space_commands.add_parser("build", help="write (and publish) the recipe's Space folder")
    sub.add_argument("--home", type=Path, help="state directory (default: $COT_FACTORY_HOME)")
    sub.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    sub.set_defaults(command="space_build")
    sub.add_argument("recipe", type=Path)
    sub.add_argument("--publish", action="store_true", help="publish the folder to the target")
    _target(
        sub,
        "local paths or Hub ids in the config, and where to publish (default: the "
        "recipe's `target`)",
    )
    sub = command(
        "demo",
        "open the Space locally: a recipe (its Space is built first) or a Space folder",
    )
    sub.add_argument("source", type=Path, help="a recipe file or a Space folder")
    sub.add_argument("--port", type=int, default=7860)
    sub = command("pull", "get a published dataset, model or Space")
    sub.add_argument("repo_id", help="namespace/name")
    sub.add_argument("--revision", help="branch, tag or commit (default: main)")
    sub.add_argument("--repo-type", choices=["dataset", "model", "space"])
    sub.add_argument("--to", type=Path, help="put the files in this folder")
    _target(sub, "where to pull from (default: local)", default="local")
    sub = command(
        "reproduce",
        "retrain and re-evaluate a published student from "
        "the recipe and dataset revision its repo records; compare with its card",
    )
    sub.add_argument("repo_id", help="the student's adapter repo, namespace/name")
    sub.add_argument("--revision", help="branch, tag or commit (default: main)")
    _target(sub, "where the repo is (default: local)", default="local")
    return parser


def _target(sub: argparse.ArgumentParser, help: str, default: str | None = None) -> None:
    sub.add_argument("--target", choices=["local", "hf"], default=default, help=help)


def _student_filters(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--student", action="append", help="only this student (repeatable)")
    sub.add_argument("--config", action="append", help="only this dataset config (repeatable)")
