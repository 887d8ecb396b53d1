"""Several pipelines evaluated side by side on the dataset they were built on, each also measured against the
reference pipeline's encoder: the summary `semsearch serve` answers at `/evaluation`.

It refuses, before any model work, what it cannot compute: `DatasetUnavailable` (no such dataset, or no qrels for the
split), `CorpusMismatch` (the pipelines index different corpora, or the dataset is not their corpus) and
`VectorsNotCached` (a pipeline's corpus vectors are not in the embedding cache: re-encoding a whole corpus is a job
for `semsearch eval`, not for a summary). All are `EvaluationUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexes.store import IndexDirError
from search.data.datasets import Dataset, DatasetError, corpus_fingerprint, load_dataset
from search.embeddings import load_cached_embeddings
from search.evaluation.evaluate import evaluate, exact_top_ids
from search.pipeline import Pipeline

EVALUATION_K = 10
Progress = Callable[[str, int, int], None]
NOTE = (
    "recall@10_vs_teacher: overlap with the reference pipeline's encoder's exact top-10 (its document vectors, no "
    "index); recall@10_vs_exact: with the same encoder's exact top-10; latencies are per query at batch 1 over the "
    "eval queries, encode including tokenisation, search including rescoring"
)


class EvaluationUnavailable(Exception):
    """The side-by-side evaluation cannot be computed; the message says why."""


class DatasetUnavailable(EvaluationUnavailable):
    """The evaluation dataset cannot be loaded, or has no qrels for the split."""


class CorpusMismatch(EvaluationUnavailable):
    """The pipelines index different corpora, or the evaluation dataset is not the corpus they index."""


class VectorsNotCached(EvaluationUnavailable):
    """A pipeline's corpus vectors are not in the embedding cache (the evaluation never re-encodes a corpus)."""


@dataclass(frozen=True)
class EvaluationSpec:
    """What to evaluate on: `dataset` (a name or a path; None: the one the indexes were built on) and its qrels
    `split`."""

    dataset: str | None = None
    split: str = "test"


def dataset_name(pipelines: Mapping[str, Pipeline], spec: EvaluationSpec) -> str:
    """`spec.dataset`, else the dataset every pipeline was built on (its recorded folder when that still exists).
    Raises `CorpusMismatch` when they were built on different ones."""
    if spec.dataset:
        return spec.dataset
    built_on = {name: pipeline.meta.get("dataset") for name, pipeline in pipelines.items()}
    hashes = {pipeline.meta.get("corpus_hash") for pipeline in pipelines.values()}
    if len(set(built_on.values())) > 1 or len(hashes) > 1:
        raise CorpusMismatch(
            "the pipelines index different corpora, so they cannot be evaluated side by side: "
            + ", ".join(f"{name} on {dataset!r}" for name, dataset in built_on.items())
        )
    paths = {pipeline.meta.get("dataset_path") for pipeline in pipelines.values()}
    path = next(iter(paths)) if len(paths) == 1 else None
    if path and Path(path).is_dir():  # recorded at build time: works for datasets loaded by path too
        return str(path)
    return str(next(iter(built_on.values())))


def load_evaluation_dataset(pipelines: Mapping[str, Pipeline], spec: EvaluationSpec) -> Dataset:
    """The evaluation dataset (never downloaded), checked to have qrels for the split and to be the pipelines'
    corpus."""
    name = dataset_name(pipelines, spec)
    try:
        dataset = load_dataset(name, download=False)
    except (DatasetError, OSError) as err:
        raise DatasetUnavailable(
            f"cannot load dataset {name!r} the pipelines were built on: {err}; give the evaluation the dataset's name "
            "or folder"
        ) from err
    if spec.split not in dataset.qrels:
        available = ", ".join(sorted(dataset.qrels)) or "none"
        raise DatasetUnavailable(
            f"dataset {dataset.name!r} has no qrels for split {spec.split!r}; available: {available}"
        )
    fingerprint = corpus_fingerprint(dataset.corpus)
    mismatched = [name for name, p in pipelines.items() if p.meta.get("corpus_hash") != fingerprint]
    if mismatched:
        raise CorpusMismatch(
            f"dataset {dataset.name!r} is not the corpus that {', '.join(mismatched)} indexes (corpus hash differs); "
            "evaluate on the dataset the indexes were built on"
        )
    return dataset


def check_cached_document_vectors(pipelines: Mapping[str, Pipeline]) -> None:
    """Raise `VectorsNotCached` naming every pipeline whose corpus vectors are not in the embedding cache."""
    missing = [
        name
        for name, pipeline in pipelines.items()
        if load_cached_embeddings(pipeline.meta.get("embedding_key", ""), pipeline.stored.index.ntotal) is None
    ]
    if missing:
        raise VectorsNotCached(
            f"the corpus vectors of {', '.join(missing)} are not in the embedding cache ($SEMSEARCH_CACHE), and a "
            "summary never re-encodes a whole corpus: run `semsearch eval --dataset DATASET --index-dir DIR` (or "
            "rebuild with `semsearch index`) for each of them with this cache first"
        )


def evaluate_side_by_side(
    pipelines: Mapping[str, Pipeline], reference: str, spec: EvaluationSpec, progress: Progress | None = None
) -> dict[str, Any]:
    """`evaluate` of every pipeline on `spec`'s dataset and split, recall@10 measured against the `reference`
    pipeline's encoder's exact top-10 (slow: every eval query through every pipeline, one at a time).

    `progress(stage, done, total)` is called between steps. Raises an `EvaluationUnavailable` saying why it cannot be
    computed, before any model work."""
    report = progress or (lambda stage, done, total: None)
    total = len(pipelines) + 1
    report("loading the dataset", 0, total)
    dataset = load_evaluation_dataset(pipelines, spec)
    check_cached_document_vectors(pipelines)
    _, texts, _ = dataset.split_queries(spec.split)
    reference_pipeline = pipelines[reference]
    try:
        report(f"exact top-{EVALUATION_K} of {reference}", 0, total)
        reference_ids = exact_top_ids(reference_pipeline, dataset, texts, EVALUATION_K, show_progress=False)
        reports = {}
        for done, (name, pipeline) in enumerate(pipelines.items(), start=1):
            report(f"evaluating {name}", done, total)
            reports[name] = evaluate(
                pipeline,
                dataset,
                spec.split,
                reference=reference_pipeline,
                show_progress=False,
                reference_top_ids=reference_ids,
            )
        report("done", total, total)
    except IndexDirError as err:
        raise EvaluationUnavailable(str(err)) from err
    return {
        "dataset": dataset.name,
        "split": spec.split,
        "queries": len(texts),
        "reference": reference,
        "note": NOTE,
        "pipelines": reports,
    }
