"""The typer app every command registers on, its logging setup, the one error-to-exit-code rule, shared options and
the shared output helpers.

Named `base`, not `app`: a submodule called `app` would be shadowed by the `app` object `search.cli` exports.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from compression.models import ModelNotAvailableError
from indexes.store import IndexDirError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Compressed-model semantic search.")
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

# Errors a user can cause (a bad option, a missing file or model): one line on stderr and exit status 2.
EXPECTED_ERRORS = (ValueError, KeyError, FileNotFoundError, ModelNotAvailableError, IndexDirError, ImportError)
USAGE_ERROR_EXIT = 2

AsJson = Annotated[bool, typer.Option("--json", help="machine-readable output")]
IndexDirOption = Annotated[Path, typer.Option(help="index directory from `semsearch index`")]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def run_or_exit(action: Callable[[], T]) -> T:
    """Run `action`; turn expected errors into a one-line message and exit status 2."""
    try:
        return action()
    except EXPECTED_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code=USAGE_ERROR_EXIT) from err


def print_json(values: Any) -> None:
    sys.stdout.write(json.dumps(values, indent=2, default=str) + "\n")


def print_mapping(title: str, values: dict[str, Any], as_json: bool) -> None:
    """`values` as indented JSON, or as a two-column table (floats to 4 decimals)."""
    if as_json:
        print_json(values)
        return
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in values.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


def parse_params(text: str | None) -> dict[str, float]:
    """`nprobe=16,efSearch=64` as a dict; {} when not given."""
    from indexes.faiss_index import parse_search_params

    return parse_search_params(text) if text else {}
