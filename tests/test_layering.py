"""The architecture, checked: which package may import which, which modules may import the server and the bench, no
private names across packages, no import cycles.

Reads the source with `ast` (imports inside functions count too), so a lazy import cannot hide a layering breach.
Each check is a function of the modules' imports, so the tests at the end can feed it a planted breach.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("semsearch_common", "compression", "indexes", "search")
# package -> the project packages it may import (itself always allowed)
ALLOWED = {
    "semsearch_common": set(),
    "compression": {"semsearch_common"},
    "indexes": {"semsearch_common"},
    "search": {"semsearch_common", "compression", "indexes"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


Import = tuple[str, list[str], int]  # (imported module, names taken from it, line)


def imports_of(path: Path) -> list[Import]:
    """Every import statement in the file."""
    return imports_in(path.read_text(encoding="utf-8"))


def imports_in(source: str) -> list[Import]:
    """Every import statement in the source, those inside functions included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names], node.lineno))
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def within(module: str, package: str) -> bool:
    """True when `module` is `package` or lives inside it."""
    return module == package or module.startswith(package + ".")


MODULES = project_modules()
IMPORTS = {name: imports_of(path) for name, path in MODULES.items()}


def test_the_tree_has_all_four_packages() -> None:
    assert {top(name) for name in MODULES} == set(PACKAGES)


def layer_breaches(imports: dict[str, list[Import]], package: str) -> list[str]:
    """`package`'s imports of project packages outside ALLOWED[package]."""
    return [
        f"{name}:{line} imports {imported}"
        for name, found in imports.items()
        if top(name) == package
        for imported, _, line in found
        if top(imported) in PACKAGES and top(imported) != package and top(imported) not in ALLOWED[package]
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_the_layers_below(package: str) -> None:
    breaches = layer_breaches(IMPORTS, package)
    assert not breaches, "layering broken:\n" + "\n".join(breaches)


@dataclass(frozen=True)
class SubpackageRule:
    """Only modules within `importers` may import `target` (a subpackage), and the `exceptions`, named one by one."""

    target: str
    importers: tuple[str, ...]
    exceptions: frozenset[str] = field(default_factory=frozenset)

    def allows(self, module: str) -> bool:
        return module in self.exceptions or any(within(module, importer) for importer in self.importers)


def imported_modules(imported: str, names: list[str]) -> set[str]:
    """What an import statement may reach: the module, and each `from` name as a submodule (`from search import
    serve` reaches `search.serve`)."""
    return {imported} | {f"{imported}.{name}" for name in names}


def subpackage_breaches(imports: dict[str, list[Import]], rule: SubpackageRule) -> list[str]:
    """Imports of `rule.target` from modules the rule does not allow."""
    breaches = []
    for name, found in imports.items():
        if rule.allows(name):
            continue
        for imported, names, line in found:
            reached = sorted(module for module in imported_modules(imported, names) if within(module, rule.target))
            if reached:
                breaches.append(f"{name}:{line} imports {imported if within(imported, rule.target) else reached[0]}")
    return breaches


SUBPACKAGE_RULES = (
    # The HTTP server is reached only through its CLI command; the engine knows nothing of HTTP.
    SubpackageRule("search.serve", importers=("search.serve", "search.cli.serve")),
    # The product's benchmarks are reached only through the `semsearch bench*` commands.
    SubpackageRule("search.bench", importers=("search.bench", "search.cli")),
)

# Inside `search`: the outer layers (CLI, server, benchmarks, jobs) sit on the core and never on each other, but for
# the CLI, which composes them all. Keys are the importing layer (None: the core, every other search module).
OUTER = ("search.cli", "search.serve", "search.bench", "search.jobs")
FORBIDDEN: dict[str | None, set[str]] = {
    "search.cli": set(),
    "search.serve": {"search.cli", "search.bench", "search.jobs"},
    "search.bench": {"search.cli", "search.serve", "search.jobs"},
    "search.jobs": {"search.cli", "search.serve", "search.bench"},
    None: set(OUTER),
}


def layer_of(module: str) -> str | None:
    return next((layer for layer in OUTER if within(module, layer)), None)


def outer_layer_breaches(imports: dict[str, list[Import]]) -> list[str]:
    """Every import of an outer `search` layer that `FORBIDDEN` rules out for the importing module's layer."""
    breaches = []
    for name, found in imports.items():
        if top(name) != "search":
            continue
        for imported, names, line in found:
            reached = {layer_of(module) for module in imported_modules(imported, names)} - {None}
            if reached & FORBIDDEN[layer_of(name)]:
                breaches.append(f"{name}:{line} imports {imported}")
    return breaches


def test_search_layers_import_only_the_core_and_themselves() -> None:
    breaches = outer_layer_breaches(IMPORTS)
    assert not breaches, "search layering broken:\n" + "\n".join(breaches)


def test_outer_layer_check_reports_planted_breaches() -> None:
    planted = {
        "search.compare": imports_in("def f():\n    from search.serve.app import create_app\n"),
        "search.jobs.main_job": imports_in("from search.bench.students import run_student_bench\n"),
        "search.jobs.other": imports_in("from search.selection import budget_pick\nfrom search import pipeline_set\n"),
        "search.cli.run": imports_in("from search.jobs.main_job import run_main_job\n"),
        "search.pipeline": imports_in("from search import jobs\n"),
    }
    assert outer_layer_breaches(planted) == [
        "search.compare:2 imports search.serve.app",
        "search.jobs.main_job:1 imports search.bench.students",
        "search.pipeline:1 imports search",
    ]


@pytest.mark.parametrize("rule", SUBPACKAGE_RULES, ids=lambda rule: rule.target)
def test_subpackages_are_imported_only_by_their_layer(rule: SubpackageRule) -> None:
    breaches = subpackage_breaches(IMPORTS, rule)
    assert not breaches, f"only {', '.join(rule.importers)} may import {rule.target}:\n" + "\n".join(breaches)


def test_rule_exceptions_name_modules_that_exist() -> None:
    missing = [name for rule in SUBPACKAGE_RULES for name in rule.exceptions if name not in MODULES]
    assert not missing, f"allow-list entries for modules that do not exist: {missing}"


def test_no_module_imports_another_packages_private_names() -> None:
    breaches = []
    for name, found in IMPORTS.items():
        for imported, names, line in found:
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
    for name, found in IMPORTS.items():
        for imported, names, _ in found:
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


def test_layer_check_reports_a_planted_breach() -> None:
    planted = {
        "indexes.bad": imports_in("def f():\n    from search.pipeline import Pipeline\n"),
        "indexes.good": imports_in("from semsearch_common.timing import percentile_ms\n"),
    }
    assert layer_breaches(planted, "indexes") == ["indexes.bad:2 imports search.pipeline"]


def test_subpackage_rules_report_planted_breaches() -> None:
    serve, bench = SUBPACKAGE_RULES
    planted = {
        "search.jobs.planted": imports_in("import search.serve.app\n"),
        "search.pipeline_planted": imports_in("def f():\n    from search import serve\n"),
        "search.cli.planted": imports_in("from search.serve.pipelines import PipelineSet\n"),
        "search.cli.serve": imports_in("from search.serve.app import create_app\n"),
        "search.serve.planted": imports_in("from search.serve.config import ServerConfig\n"),
        "search.server_like": imports_in("from search import serve_helpers, pipeline\n"),  # not search.serve
    }
    assert subpackage_breaches(planted, serve) == [
        "search.jobs.planted:1 imports search.serve.app",
        "search.pipeline_planted:2 imports search.serve",
        "search.cli.planted:1 imports search.serve.pipelines",
    ]
    planted = {
        "search.jobs.students": imports_in("from search.bench.students import budget_pick\n"),
        "search.serve.app": imports_in("from search.bench import pareto\n"),
        "search.cli.bench": imports_in("from search.bench.ann import run_bench\n"),
        "search.bench.ann.run": imports_in("from search.bench.pareto import pareto_flags\n"),
    }
    assert subpackage_breaches(planted, bench) == [
        "search.jobs.students:1 imports search.bench.students",
        "search.serve.app:1 imports search.bench",
    ]
