"""What each `cot-factory` command does; `factory.cli` parses the arguments and calls these.
Heavy libraries load inside the functions, so importing this module stays instant."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_validate(args) -> None:
    from factory.recipe import load_recipe, plan_configs

    recipe = load_recipe(args.recipe)
    print(f"{args.recipe}: valid recipe {recipe.name!r}, tag {recipe.tag}")
    print(f"dataset {recipe.dataset.repo_id}, configs:")
    for plan in plan_configs(recipe):
        shape = f"{plan.format} level {plan.level}" if plan.format else "from the source"
        print(f"  {plan.name:<24} teacher {plan.teacher:<16} {shape}")
    if recipe.students:
        from factory.recipe import student_name
        from factory.train import check_training

        check_training(recipe)
        names = ", ".join(student_name(s) for s in recipe.students)
        print(f"students: {names}; training options are valid SFTConfig/LoraConfig options")


def cmd_run(args) -> None:
    from factory.paths import home_dir
    from factory.pipeline import run_recipe
    from factory.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    built, results = run_recipe(
        recipe, home_dir(args.home), students=args.student, configs=args.config, target=args.target
    )
    print(_summary(built))
    dataset = json.loads((built.run_dir / "manifest.json").read_text())["published_dataset"]
    print(
        f"published dataset {dataset['repo_id']} @ {dataset['commit'][:12]}: "
        f"{dataset['path'] or dataset['url']}"
    )
    print(_student_summary(results))
    if results:
        target = args.target or recipe.target
        _space(recipe, home_dir(args.home), target, publish=True)
        home_flag = f" --home {args.home}" if args.home else ""
        print(f"try the students side by side: cot-factory demo {args.recipe}{home_flag}")


def cmd_train(args) -> None:
    from factory.launch import launch_command, run_launch
    from factory.paths import home_dir, run_dir
    from factory.pipeline import student_dir
    from factory.recipe import load_recipe, student_name
    from factory.train import check_training, train_student

    recipe = load_recipe(args.recipe)
    check_training(recipe)
    if args.accelerate:
        command = launch_command(args.recipe, args.accelerate, args.student, args.config, args.home)
        print(" ".join(command))
        if not args.dry_run:
            run_launch(command)
        return
    home = home_dir(args.home)
    run = run_dir(home, recipe.name, recipe.hash)
    dataset = run / "dataset"
    if not (dataset / "README.md").is_file():
        raise SystemExit(
            f"error: no built dataset in {run}: run `cot-factory build {args.recipe}` first"
        )
    configs = args.config or recipe.train.configs or _built_configs(run)
    for student in recipe.students:
        if args.student and student_name(student) not in args.student:
            continue
        for config in configs:
            out = student_dir(run, student_name(student), config, recipe.train.seeds[0])
            result = train_student(
                recipe, student, config, dataset, out, home, recipe.train.seeds[0]
            )
            print(
                f"{student_name(student)} on {config}: loss {result.metrics.get('train_loss')}, "
                f"adapter {result.adapter_dir}"
            )


def _built_configs(run: Path) -> list[str]:

    stats = json.loads((run / "manifest.json").read_text())["configs"]
    return [name for name, s in stats.items() if s["kept"]]


def cmd_eval(args) -> None:
    from factory.evaluate import evaluate, load_student
    from factory.paths import home_dir, run_dir
    from factory.recipe import load_recipe
    from factory.sources import load_problems

    recipe, home = load_recipe(args.recipe), home_dir(args.home)
    adapter = (
        _adapter_path(args.adapter, args.revision, args.target, home) if args.adapter else None
    )
    model = args.model or (_adapter_base(adapter) if adapter else None)
    if model is None:
        raise SystemExit("error: give --model, --adapter, or both")
    test = load_problems(recipe.source, recipe.dataset).get("test")
    if not test:
        raise SystemExit(f"error: recipe {args.recipe} has no test split")
    spec = recipe.eval.model_copy(update={"limit": args.limit or recipe.eval.limit})
    label = Path(str(args.adapter or model)).name
    out = args.out or run_dir(home, recipe.name, recipe.hash) / "evals" / label
    loaded, tokenizer = load_student(model, adapter, home)
    metrics = evaluate(loaded, tokenizer, test, recipe.source.task, spec, out, label=label)
    low, high = metrics["ci95"]
    print(
        f"{label}: accuracy {100 * metrics['accuracy']:.1f}% "
        f"[{100 * low:.1f}%, {100 * high:.1f}%] on {metrics['total']} problems"
    )
    print(f"predictions: {out}")


def _adapter_path(adapter: str, revision: str | None, target: str, home: Path) -> Path:
    if Path(adapter).is_dir():
        return Path(adapter)
    from factory.publish import make_target

    return make_target(target, home).pull(adapter, revision, "model").path


def _adapter_base(adapter: Path) -> str:

    from factory.models import alias_for

    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    return alias_for(base)


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

    _publish(load_recipe(args.recipe), home_dir(args.home), args.target)


def _publish(recipe, home: Path, target: str | None = None) -> None:
    from factory.publish import publish_dataset

    published = publish_dataset(recipe, home, target)
    state = "new commit" if published.created else "unchanged, no new commit"
    print(
        f"published dataset {published.repo_id} @ {published.commit[:12]} ({state}), "
        f"tag {recipe.tag}"
    )
    where = published.path or published.url
    print(f"  files: {where}")
    print(
        f"  load:  datasets.load_dataset({str(published.path or published.repo_id)!r}, CONFIG"
        f"{'' if published.path else f', revision={recipe.tag!r}'})"
    )


def cmd_sweep(args) -> None:
    from factory.paths import home_dir
    from factory.recipe import load_recipe
    from factory.sweep import sweep

    recipe = load_recipe(args.recipe)
    out = sweep(
        recipe, home_dir(args.home), students=args.student, configs=args.config, seeds=args.seeds
    )
    _print_report(out)


def cmd_report(args) -> None:
    from factory.paths import home_dir
    from factory.recipe import load_recipe
    from factory.report import write_report

    recipe, home = load_recipe(args.recipe), home_dir(args.home)
    out = write_report(recipe, home)
    _print_report(out)
    if args.publish:
        from factory.paths import run_dir
        from factory.report import add_results_to_card

        target = args.target or recipe.target
        add_results_to_card(run_dir(home, recipe.name, recipe.hash) / "dataset" / "README.md", out)
        _publish(recipe, home, target)
        _space(recipe, home, target, publish=True)


def _print_report(out: Path) -> None:

    results = json.loads((out / "results.json").read_text())
    for student, advice in results["recommendations"].items():
        print(f"{student}: {advice['text']}")
    print(f"report: {out / 'report.md'}")


def cmd_space_build(args) -> None:
    from factory.paths import home_dir
    from factory.recipe import load_recipe

    recipe, home = load_recipe(args.recipe), home_dir(args.home)
    _space(recipe, home, args.target or recipe.target, publish=args.publish)


def _space(recipe, home: Path, target: str, publish: bool) -> Path:
    from factory.space import build_space, space_repo

    folder = build_space(recipe, home, target)
    print(f"space folder: {folder}")
    if publish:
        from factory.publish import publish_folder

        published = publish_folder(
            folder,
            space_repo(recipe),
            "space",
            recipe,
            home,
            target,
            f"cot-factory: demo of recipe {recipe.name} ({recipe.tag})",
        )
        print(
            f"published space {published.repo_id} @ {published.commit[:12]}: "
            f"{published.path or published.url}"
        )
    return folder


def cmd_demo(args) -> None:
    import os
    import subprocess

    folder = args.source
    if folder.is_file():
        from factory.paths import home_dir
        from factory.recipe import load_recipe

        folder = _space(load_recipe(folder), home_dir(args.home), "local", publish=False)
    if not (folder / "app.py").is_file():
        raise SystemExit(f"error: {folder} is neither a recipe nor a Space folder (no app.py)")
    print(f"opening the demo on http://127.0.0.1:{args.port} (Ctrl+C to stop)")
    env = {**os.environ, "GRADIO_SERVER_PORT": str(args.port)}
    subprocess.run([sys.executable, "app.py"], cwd=folder, env=env, check=False)


def cmd_pull(args) -> None:
    from factory.paths import home_dir
    from factory.publish import make_target

    target = make_target(args.target, home_dir(args.home))
    found = target.pull(args.repo_id, args.revision, args.repo_type, args.to)
    print(f"{found.repo_type} {found.repo_id} @ {found.commit}")
    print(found.path)


def cmd_reproduce(args) -> None:
    from factory.paths import home_dir
    from factory.reproduce import reproduce

    result = reproduce(args.repo_id, args.revision, args.target, home_dir(args.home))
    meta = result.meta
    print(
        f"reproduced {result.adapter.repo_id} @ {result.adapter.commit[:12]}: student "
        f"{meta['student']} on {meta['config']}, dataset {meta['dataset_repo']} @ "
        f"{result.dataset.commit[:12]}"
    )
    print(f"{'':<12} {'accuracy':>9} {'95% interval':>16} {'n':>5}")
    for label, metrics in (("card", result.published), ("reproduced", result.reproduced)):
        low, high = metrics["ci95"]
        print(
            f"{label:<12} {100 * metrics['accuracy']:>8.1f}% "
            f"{f'[{100 * low:.1f}, {100 * high:.1f}]':>16} {metrics['total']:>5}"
        )
    low, high = result.published["ci95"]
    inside = low <= result.reproduced["accuracy"] <= high
    print(
        f"{'difference':<12} {100 * result.difference:>+7.1f} pp "
        f"({'within' if inside else 'outside'} the card's 95% interval)"
    )
    print(f"outputs: {result.out}")


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


def _student_summary(results) -> str:
    lines = [
        f"{'student':<16} {'config':<20} {'base':>7} {'distilled':>10} {'95% interval':>16}  "
        "published"
    ]
    for r in results:
        low, high = r.distilled["ci95"]
        lines.append(
            f"{r.student:<16} {r.config:<20} {100 * r.base['accuracy']:>6.1f}% "
            f"{100 * r.distilled['accuracy']:>9.1f}% "
            f"{f'[{100 * low:.1f}, {100 * high:.1f}]':>16}  {r.repo_id}@{r.commit[:8]}"
        )
        lines.append(f"{'':<16} card: {r.folder / 'README.md'}")
    return "\n".join(lines)


def _or_dash(value) -> str:
    return "-" if value is None else str(value)
