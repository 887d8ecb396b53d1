"""The architecture, checked: which package may import which, no private names across packages, no import cycles.

Reads the source with `ast` (imports inside functions count too), so a lazy import cannot hide a layering breach.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "compression", "indexes", "search")
# package -> the project packages it may import (itself always allowed)
ALLOWED = {
    "common": set(),
    "compression": {"common"},
    "indexes": {"common"},
    "search": {"common", "compression", "indexes"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def imports_of(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import statement in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names], node.lineno))
    return found


def top(module: str) -> str:
    return module.split(".")[0]


MODULES = project_modules()


def test_the_tree_has_all_four_packages() -> None:
    assert {top(name) for name in MODULES} == set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_the_layers_below(package: str) -> None:
    breaches = [
        f"{name}:{line} imports {imported}"
        for name, path in MODULES.items()
        if top(name) == package
        for imported, _, line in imports_of(path)
        if top(imported) in PACKAGES and top(imported) != package and top(imported) not in ALLOWED[package]
    ]
    assert not breaches, "layering broken:\n" + "\n".join(breaches)


def test_no_module_imports_another_packages_private_names() -> None:
    breaches = []
    for name, path in MODULES.items():
        for imported, names, line in imports_of(path):
            if top(imported) not in PACKAGES:
                continue
            private_module = any(part.startswith("_") and part != "__init__" for part in imported.split("."))
            private_names = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if top(imported) != top(name) and (private_module or private_names):
                breaches.append(f"{name}:{line} takes {private_names or imported} from {imported}")
    assert not breaches, "\n".join(breaches)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (`from pkg import mod` names the submodule). Every edge counts, a
    package `__init__` re-exporting its children included, so a child that imports its own package is a cycle."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for imported, names, _ in imports_of(path):
            targets = [f"{imported}.{n}" for n in names if f"{imported}.{n}" in MODULES] or [imported]
            graph[name] |= {target for target in targets if target in MODULES and target != name}
    return graph


def test_no_import_cycles_between_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in a directed graph (iterative DFS), or None."""
    state: dict[str, int] = {}
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(child) == 1:
                return path[path.index(child) :] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


def test_cycle_finder_finds_a_planted_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_layering_check_catches_a_planted_breach(tmp_path: Path) -> None:
    planted = tmp_path / "bad.py"
    planted.write_text(
        "def f():\n    from search.pipeline import Pipeline\n    from indexes.faiss_index import _hidden\n"
    )
    imports = imports_of(planted)
    assert ("search.pipeline", ["Pipeline"], 2) in imports  # lazy imports inside functions are seen
    assert ("indexes.faiss_index", ["_hidden"], 3) in imports


# Inside `search`: the outer layers (CLI, server, benchmarks, jobs) sit on the core and never on each other, but for
# the CLI, which composes them all. Keys are the importing layer (None: the core, every other search module).
OUTER = ("search.cli", "search.serve", "search.bench", "search.jobs")
FORBIDDEN = {
    "search.cli": set(),
    "search.serve": {"search.cli", "search.bench", "search.jobs"},
    "search.bench": {"search.cli", "search.serve", "search.jobs"},
    "search.jobs": {"search.cli", "search.serve", "search.bench"},
    None: set(OUTER),
}
# Investigation tools that still live in the package and import the server.
KNOWN_EXCEPTIONS = {("search.bench.latency", "search.serve")}


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_of(module: str) -> str | None:
    return next((layer for layer in OUTER if within(module, layer)), None)


def subpackage_breaches(modules: dict[str, Path]) -> list[str]:
    """Every import of an outer `search` layer that `FORBIDDEN` rules out for the importing module's layer."""
    breaches = []
    for name, path in modules.items():
        if top(name) != "search":
            continue
        for imported, _, line in imports_of(path):
            target = layer_of(imported)
            if target in FORBIDDEN[layer_of(name)] and (name, target) not in KNOWN_EXCEPTIONS:
                breaches.append(f"{name}:{line} imports {imported}")
    return breaches


def test_search_layers_import_only_the_core_and_themselves() -> None:
    breaches = subpackage_breaches(MODULES)
    assert not breaches, "search layering broken:\n" + "\n".join(breaches)


def test_only_the_serve_command_imports_the_server() -> None:
    importers = {
        name
        for name, path in MODULES.items()
        if not within(name, "search.serve")
        for imported, _, _ in imports_of(path)
        if within(imported, "search.serve")
    }
    assert importers - {name for name, _ in KNOWN_EXCEPTIONS} == {"search.cli.serve"}


def test_subpackage_check_catches_planted_breaches(tmp_path: Path) -> None:
    core = tmp_path / "core.py"
    core.write_text("def f():\n    from search.serve.app import create_app\n")
    job = tmp_path / "job.py"
    job.write_text("from search.bench.students import run_student_bench\n")
    fine = tmp_path / "fine.py"
    fine.write_text("from search.selection import budget_pick\nfrom search.pipeline_set import PipelineSet\n")
    planted = {"search.compare": core, "search.jobs.main_job": job, "search.jobs.other": fine}
    assert subpackage_breaches(planted) == [
        "search.compare:2 imports search.serve.app",
        "search.jobs.main_job:1 imports search.bench.students",
    ]
