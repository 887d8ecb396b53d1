"""The recall-vs-latency map `GET /bench/results` serves: a `semsearch bench` output folder, checked and made public.

`semsearch bench --out DIR` writes `results.json` (one row per encoder x index x search parameters, each with its
`pareto` flag: on the recall@10-vs-teacher / total-latency frontier) and `summary.json` (the budget pick, the
machine, the dataset). `load_bench_results(DIR)` reads both, refuses a file that is not such an output (naming the
file and what is wrong), marks the budget pick's row and drops server paths (`public_description`), so the web page
draws what the benchmark computed and decides nothing itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.serve.schemas import public_description

RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.json"
X_KEY = "total_ms_p50"  # the frontier's cost axis (`semsearch bench`'s Pareto flag is computed on these two)
Y_KEY = "recall@10_vs_teacher"  # its quality axis
REQUIRED_KEYS = ("encoder", "index", X_KEY, Y_KEY, "pareto")
NUMBER_KEYS = (X_KEY, Y_KEY)
SUMMARY_KEYS = ("dataset", "split", "queries", "configurations", "teacher", "machine")


class BenchResultsError(ValueError):
    """A bench folder that cannot be served: missing, not JSON, or not what `semsearch bench` writes."""


@dataclass(frozen=True)
class BenchResults:
    """A bench output as the page draws it: `rows` (public, each with `budget_pick`), the budget and run facts."""

    rows: list[dict[str, Any]]
    budget: dict[str, Any] | None
    run: dict[str, Any]

    def public(self) -> dict[str, Any]:
        return {"x": X_KEY, "y": Y_KEY, "rows": self.rows, "budget": self.budget, **self.run}


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise BenchResultsError(f"{path} does not exist: give a folder written by `semsearch bench --out`") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BenchResultsError(f"{path} is not readable JSON ({err})") from err


def row_problem(row: Any) -> str | None:
    """What makes `row` unusable as a point of the map, or None."""
    if not isinstance(row, Mapping):
        return "is not an object"
    missing = [key for key in REQUIRED_KEYS if key not in row]
    if missing:
        return f"lacks {', '.join(missing)}"
    for key in NUMBER_KEYS:
        value = row[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            return f"has a non-numeric {key}"
    return None


def same_configuration(row: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    return all(row.get(key) == other.get(key) for key in ("encoder", "index", "params", "doc_encoder"))


def load_bench_results(folder: Path) -> BenchResults:
    """`folder`'s results.json (required) and summary.json (optional), checked; server paths dropped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchResultsError(f"bench folder {folder} is not a directory: give the --out folder of `semsearch bench`")
    rows = read_json(folder / RESULTS_FILE)
    if not isinstance(rows, list) or not rows:
        raise BenchResultsError(f"{folder / RESULTS_FILE} is not a non-empty list of result rows")
    for number, row in enumerate(rows, start=1):
        problem = row_problem(row)
        if problem:
            raise BenchResultsError(f"{folder / RESULTS_FILE}: row {number} {problem}")
    summary_path = folder / SUMMARY_FILE
    summary = read_json(summary_path) if summary_path.exists() else {}
    if not isinstance(summary, Mapping):
        raise BenchResultsError(f"{summary_path} is not a JSON object")
    budget = summary.get("budget") if isinstance(summary.get("budget"), Mapping) else None
    best = budget.get("best") if budget else None
    marked = [{**row, "budget_pick": isinstance(best, Mapping) and same_configuration(row, best)} for row in rows]
    run = {key: summary[key] for key in SUMMARY_KEYS if key in summary}
    return BenchResults(
        rows=public_description(marked),
        budget=public_description(dict(budget)) if budget else None,
        run=public_description(run),
    )
