"""The package's shape, read from its source with `ast`: the import graph has no cycle, stages
never import each other, the recipe imports nothing else, one orchestrator publishes and writes
the manifest, one module prints."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "factory"
STAGES = {"generate", "verify", "build", "train", "evaluate", "release", "report", "space"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str) -> set[str]:
    """Every factory module `name` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from factory.recipe import limits` imports the module `factory.recipe.limits`
            submodules = [f"{node.module}.{a.name}" for a in node.names]
            targets = [t for t in submodules if t in MODULES] or [node.module]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


GRAPH = {name: imports(name) for name in MODULES}


def test_the_import_graph_has_no_cycle():
    done, on_path = set(), []

    def visit(name: str) -> None:
        if name in on_path:
            cycle = on_path[on_path.index(name) :] + [name]
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")
        if name in done:
            return
        on_path.append(name)
        for target in sorted(GRAPH[name]):
            visit(target)
        on_path.pop()
        done.add(name)

    for name in sorted(GRAPH):
        visit(name)


def test_a_cycle_would_be_found():
    """The check above is not vacuous: the graph has edges, and a planted cycle is caught."""
    assert "factory.recipe" in GRAPH["factory.sources"]
    assert sum(len(targets) for targets in GRAPH.values()) > 50


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stages_never_import_each_other(stage):
    others = {f"factory.{s}" for s in STAGES - {stage}}
    assert not GRAPH[f"factory.{stage}"] & others


def test_the_recipe_package_imports_nothing_else_from_the_package():
    for name, targets in GRAPH.items():
        if name.startswith("factory.recipe"):
            assert all(t.startswith("factory.recipe") for t in targets), (name, targets)


def test_one_orchestrator_publishes_and_writes_the_manifest():
    publishing = {
        n for n, t in GRAPH.items() if "factory.hub" in t and not n.startswith("factory.hub")
    }
    assert publishing <= {"factory.run", "factory.cli"}  # the CLI only for `pull`
    cli_calls = {
        node.func.attr
        for node in ast.walk(ast.parse(MODULES["factory.cli"].read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert "pull" in cli_calls and "publish" not in cli_calls
    writers = set()
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("rebuilt", "with_student"):
                writers.add(name)
    assert writers == {"factory.run"}


def test_only_the_cli_prints():
    printing = set()
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                printing.add(name)
    assert printing == {"factory.cli"}


def test_paths_a_recipe_influences_stay_under_the_home(tmp_path):
    """Behind the recipe's own checks (tests/test_hostile_recipes.py), the run folder and the
    local registry refuse names that would climb out of the home."""
    from factory.hub import HubError, make_target
    from factory.paths import HomeEscape, RunFolder

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    home = tmp_path / "home"
    with pytest.raises(HomeEscape, match="outside the home directory"):
        RunFolder.of(home, "../../elsewhere", "0123abcd")
    for repo_id in ("local/..", "../x", "a/../../b"):
        with pytest.raises(HubError, match="is not a repo id"):
            make_target("local", home).publish(folder, repo_id, "dataset", tag=None, message="m")
    assert {p.name for p in tmp_path.iterdir()} <= {"folder", "home"}
