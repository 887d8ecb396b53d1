"""The side-by-side comparison: several pipelines' answers to one query, each measured against a reference pipeline's
(overlap, the ids missed and added, each hit's rank in the reference's top-k, speed-up).

`compare_results` is pure; `CompareResult.to_dict` is its JSON form (`POST /compare` and `semsearch search --compare
--json` both answer it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from search.evaluation.metrics import knn_recall
from search.pipeline import Hit, SearchResult, Timings

REFERENCE_NAME = "teacher"
MIN_TIMED_MS = 1e-3  # a time below the clock's resolution counts as this much (no division by zero)


def choose_reference(names: Sequence[str], reference: str | None) -> str:
    """`reference` if it is one of `names`, else `teacher` if it is, else the first name. Raises ValueError listing
    `names` when `reference` is not one of them, or when there are none."""
    if not names:
        raise ValueError("no pipelines to choose a reference from")
    if reference is not None:
        if reference not in names:
            raise ValueError(f"reference pipeline {reference!r} is not loaded; loaded: {', '.join(names)}")
        return reference
    return REFERENCE_NAME if REFERENCE_NAME in names else names[0]


def speedup(reference_ms: float, ms: float) -> float:
    """How many times faster than the reference: `reference_ms / ms`."""
    return reference_ms / max(ms, MIN_TIMED_MS)


@dataclass(frozen=True)
class Comparison:
    """One pipeline's answer to a compared query, measured against the reference's answer."""

    hits: list[Hit]
    timings: Timings
    recall_vs_reference: float  # knn_recall of this top-k against the reference's (1.0 when that is empty)
    missing: list[str]  # in the reference's top-k, not in this one's
    extra: list[str]  # in this one's top-k, not in the reference's
    reference_ranks: list[int | None]  # per hit: its 1-based rank in the reference's top-k, None when not there
    speedup_vs_reference: float  # the reference's total_ms / this one's (1.0 for the reference itself)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: hits with their `reference_rank`, timings, `recall@k_vs_teacher`, missing, extra, speed-up."""
        ranked = zip(self.hits, self.reference_ranks, strict=True)
        return {
            "hits": [{**vars(hit), "reference_rank": rank} for hit, rank in ranked],
            "timings": vars(self.timings).copy(),
            "recall@k_vs_teacher": self.recall_vs_reference,
            "missing": list(self.missing),
            "extra": list(self.extra),
            "speedup_vs_reference": self.speedup_vs_reference,
        }


@dataclass(frozen=True)
class CompareResult:
    """Every compared pipeline's answer to `query` (reference first when it was searched first), by name."""

    query: str
    k: int
    reference: str
    pipelines: dict[str, Comparison]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: query, k, reference and each pipeline's `Comparison.to_dict`."""
        pipelines = {name: comparison.to_dict() for name, comparison in self.pipelines.items()}
        return {"query": self.query, "k": self.k, "reference": self.reference, "pipelines": pipelines}


def compare_results(query: str, k: int, reference: str, results: Mapping[str, SearchResult]) -> CompareResult:
    """Measure each pipeline's answer to `query` (`results`, one per pipeline, the `reference` among them) against the
    reference's top-k."""
    if reference not in results:
        raise ValueError(f"no answer from the reference pipeline {reference!r}; answers from: {', '.join(results)}")
    wanted = [hit.id for hit in results[reference].hits]
    reference_ms = results[reference].timings.total_ms
    rank_of = {doc: rank for rank, doc in enumerate(wanted, start=1)}
    compared = {}
    for name, result in results.items():
        got = [hit.id for hit in result.hits]
        got_set = set(got)
        compared[name] = Comparison(
            hits=result.hits,
            timings=result.timings,
            recall_vs_reference=knn_recall([got], [wanted], k),
            missing=[doc for doc in wanted if doc not in got_set],
            extra=[doc for doc in got if doc not in rank_of],
            reference_ranks=[rank_of.get(doc) for doc in got],
            speedup_vs_reference=speedup(reference_ms, result.timings.total_ms),
        )
    return CompareResult(query, k, reference, compared)
