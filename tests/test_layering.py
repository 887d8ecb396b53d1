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
