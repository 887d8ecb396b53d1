"""The typer app every command registers on, its logging setup, the one error-to-exit-code rule, shared options and
the shared output helpers.

Named `base`, not `app`: a submodule called `app` would be shadowed by the `app` object `search.cli` exports.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from compression.models import ModelNotAvailableError
from semsearch_common.errors import MissingDependencyError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Compressed-model semantic search.")
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

# Errors a user can cause (a bad option, a missing or corrupt file, index or model, a file system refusing a write, a
# package not installed): one line on stderr, naming the file and the fix, and exit status 2; `--verbose` adds the
# traceback. Load functions raise these with such messages (IndexDirError, ModelLoadError and DatasetError are
# ValueErrors). A bare KeyError, ImportError or anything else is a bug and keeps its traceback.
EXPECTED_ERRORS = (ValueError, OSError, ModelNotAvailableError, MissingDependencyError)
USAGE_ERROR_EXIT = 2


@dataclass
class CliState:
    """What the root callback learnt from the global options, for the commands that run after it."""

    verbose: bool = False


STATE = CliState()

AsJson = Annotated[bool, typer.Option("--json", help="machine-readable output")]
IndexDirOption = Annotated[Path, typer.Option(help="index directory from `semsearch index`")]
THREADS_DEFAULT = "every core this process may use"  # what `semsearch_common.threads.resolve_threads(None)` gives


def threads_option(what: str) -> Any:
    """A `--threads` option setting `what`; left out, the command passes `resolve_threads(None)` (every core)."""
    return typer.Option(min=1, help=f"{what} (default: {THREADS_DEFAULT})")


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging, and tracebacks with errors")] = False,
) -> None:
    STATE.verbose = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def run_or_exit(action: Callable[[], T]) -> T:
    """Run `action`; turn expected errors into a one-line message (`error: ...`) and exit status 2.

    With `--verbose` the traceback is printed first; anything else (a bug) propagates with its traceback."""
    try:
        return action()
    except EXPECTED_ERRORS as err:
        if STATE.verbose:
            traceback.print_exception(err, file=sys.stderr)
        typer.echo(f"error: {error_line(err)}", err=True)
        raise typer.Exit(code=USAGE_ERROR_EXIT) from err


def error_line(err: BaseException) -> str:
    """The message of an expected error on one line (an OSError with its file)."""
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in str(err):
        message = f"{err.filename}: {err.strerror or err}"
    else:
        message = str(err) or type(err).__name__
    return " ".join(message.split())


def check_index_dir(index_dir: Path) -> dict[str, Any]:
    """Read an index directory's meta.json and check its encoder identities can be rebuilt, naming the file if not;
    the commands call this before loading a pipeline so a bad meta.json is reported as such, not as a model error."""
    from compression.encoders.loading import check_identity
    from indexes.store import META_FILE, read_meta

    meta = read_meta(index_dir)
    for key in ("encoder", "doc_encoder"):
        if key in meta:
            check_identity(meta[key], Path(index_dir) / META_FILE)
    return meta


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
