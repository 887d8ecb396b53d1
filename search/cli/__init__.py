"""The `semsearch` command line: thin commands over the pipeline, jobs, evaluator, benchmarks and server.

- `base`: the typer `app`, logging setup, the error-to-exit-code rule (domain errors: one line, exit 2; bugs keep
  their traceback), shared options and output helpers; `choices`: the fixed choices as Enums built from their
  modules' allowed names;
- `index`: `index`, `search`, `eval`; `documents`: `add`, `delete`, `show` (writes in place); `distill`: `distill`,
  `quantize`, `prune-vocab`; `run`: the main job; `bench`: `bench`, `bench-compression`, `bench-scale`; `students`:
  `bench-students` (the student frontier); `serve`: the HTTP server.

Commands parse options, call one function and print its result; the work lives in `search.jobs`, `search.bench`,
`search.evaluation`, `search.serve` and `search.pipeline`, imported inside each command so `--help` stays fast.
May import everything under `search`, `compression`, `indexes` and `semsearch_common`.
"""

# Importing a module registers its commands; this order is the order `semsearch --help` lists them in.
# isort: off
from search.cli import index, documents, distill, run, bench, students, serve  # noqa: F401
from search.cli.base import app

# isort: on

__all__ = ["app"]

if __name__ == "__main__":  # pragma: no cover
    app()
