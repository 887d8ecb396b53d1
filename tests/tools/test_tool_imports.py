"""The investigation tools live outside the package, so nothing else notices when the package renames what they use:
every project name each tool imports (lazily inside functions too) must still exist, and each tool's command line
must still start."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"semsearch_common", "compression", "indexes", "search"}
TOOLS = {
    "latency_study": ROOT / "benchmarks/latency/latency_study.py",
    "reliability_harness.__main__": ROOT / "benchmarks/reliability/reliability_harness",
    "distributed_bench": ROOT / "benchmarks/distributed/distributed_bench.py",
    "web_screenshots": ROOT / "benchmarks/web/web_screenshots.py",
}


def project_imports(path: Path) -> list[tuple[str, str, str]]:
    """(file:line, module, name) of every `from <project module> import name` in the file or folder."""
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return [
        (f"{file.name}:{node.lineno}", node.module, alias.name)
        for file in files
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
        if node.module.split(".")[0] in PACKAGES
        for alias in node.names
    ]


def missing_names(imports: list[tuple[str, str, str]]) -> list[str]:
    """The imports whose module, or whose name in it (an attribute or a submodule), no longer exists."""
    missing = []
    for where, module, name in imports:
        try:
            if not hasattr(importlib.import_module(module), name):
                importlib.import_module(f"{module}.{name}")
        except ModuleNotFoundError:
            missing.append(f"{where} from {module} import {name}")
    return missing


@pytest.mark.parametrize("tool", TOOLS)
def test_every_project_name_a_tool_imports_exists(tool: str) -> None:
    missing = missing_names(project_imports(TOOLS[tool]))
    assert not missing, "the package no longer has:\n" + "\n".join(missing)


@pytest.mark.parametrize("tool", TOOLS)
def test_the_command_line_starts(tool: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module(tool).main
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "usage: python -m " + tool.split(".")[0] in capsys.readouterr().out


def test_the_import_check_reports_a_renamed_name_and_module(tmp_path: Path) -> None:
    planted = tmp_path / "tool.py"
    planted.write_text(
        "import numpy\nfrom search.pipeline import Pipeline\n"
        "def f():\n    from search.pipeline import NoSuchThing\n    from search.no_such_module import x\n"
    )
    assert missing_names(project_imports(planted)) == [
        "tool.py:4 from search.pipeline import NoSuchThing",
        "tool.py:5 from search.no_such_module import x",
    ]
