"""`run_bench`: load and check every encoder and factory first, encode the corpus and queries once per encoder,
compute the exact ground truths, then build and sweep every (encoder, index) pair with `spec.threads` BLAS/OpenMP
threads, and write the outputs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from compression.encoders import Encoder, load_encoder
from indexes.exact import exact_search
from indexes.faiss_index import default_search_params, import_faiss, validate_factory
from indexes.ids import DocIdMap
from search.bench.ann.encoders import EncodedQueries, encode_queries_timed, fp32_counterparts, precision_of
from search.bench.ann.measure import EncoderRun, IndexBuildError, RunContext, bench_index
from search.bench.ann.report import BenchResult, write_outputs
from search.bench.ann.selections import loss_split, mark_pareto
from search.bench.ann.spec import TOP_K, BenchSpec, sweep_grid
from search.data.datasets import Dataset, load_dataset
from search.embeddings import encode_corpus
from search.evaluation.metrics import knn_recall
from semsearch_common.machine import machine_info
from semsearch_common.progress import make_progress
from semsearch_common.threads import limit_threads

logger = logging.getLogger(__name__)

VERSION_PACKAGES = ("faiss-cpu", "onnxruntime", "torch", "sentence-transformers", "numpy", "matplotlib")


def package_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (no heavy imports)."""
    versions: dict[str, str | None] = {}
    for name in VERSION_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def bench_machine(threads: int) -> dict[str, Any]:
    """`semsearch_common.machine.machine_info` plus FAISS's OpenMP threads and build options and the package versions;
    call
    it inside `limit_threads` so the pools are listed as the run uses them."""
    faiss = import_faiss()
    info = machine_info(threads)
    info["faiss_omp_threads"] = faiss.omp_get_max_threads()
    info["faiss_compile_options"] = faiss.get_compile_options() if hasattr(faiss, "get_compile_options") else None
    info["versions"] = package_versions()
    return info


def select_queries(
    dataset: Dataset, split: str, max_queries: int | None
) -> tuple[list[str], list[str], dict[str, dict[str, int]]]:
    """The split's query ids, texts and qrels, cut to the first `max_queries` queries."""
    query_ids, texts, qrels = dataset.split_queries(split)
    if max_queries is not None:
        query_ids, texts = query_ids[:max_queries], texts[:max_queries]
        qrels = {qid: qrels[qid] for qid in query_ids}
    return query_ids, texts, qrels


def load_checked_encoders(spec: BenchSpec) -> Callable[[str], Encoder]:
    """Load the teacher and every entry's query and document encoders and check that each pair shares a dimension
    every factory fits, before the long work starts; returns the (memoised) loader."""
    encoders: dict[str, Encoder] = {}

    def encoder(model_spec: str) -> Encoder:
        if model_spec not in encoders:
            encoders[model_spec] = load_encoder(model_spec, threads=spec.threads)
        return encoders[model_spec]

    encoder(spec.teacher)
    for entry in spec.encoders:
        query_enc = encoder(entry.spec)
        doc_enc = encoder(entry.doc_spec or entry.spec)
        if query_enc.dim != doc_enc.dim:
            raise ValueError(
                f"encoder {entry.label!r}: {query_enc.dim}-d queries cannot search {doc_enc.dim}-d documents "
                f"encoded by {entry.doc_spec!r}; an asymmetric pair must share one embedding space"
            )
        for factory in spec.indexes:
            validate_factory(factory, query_enc.dim)
    return encoder


def run_bench(spec: BenchSpec, out_dir: Path | str) -> list[dict[str, Any]]:
    """Measure every configuration of `spec`, write all outputs into `out_dir`, and return the rows."""
    out_dir = Path(out_dir)
    dataset = load_dataset(spec.dataset)
    query_ids, texts, qrels = select_queries(dataset, spec.split, spec.max_queries)
    encoder = load_checked_encoders(spec)
    sweep = spec.sweep_dict()
    unused = [name for name in sweep if not any(name in default_search_params(f, True) for f in spec.indexes)]
    if unused:
        logger.warning("--sweep %s applies to none of the indexes %s", ", ".join(unused), "; ".join(spec.indexes))
    precisions = {entry.label: precision_of(encoder(entry.spec)) for entry in spec.encoders}
    counterparts = fp32_counterparts(spec.encoders, precisions)
    corpus_vectors: dict[str, np.ndarray] = {}
    queries: dict[str, EncodedQueries] = {}

    def docs_of(model_spec: str) -> np.ndarray:
        if model_spec not in corpus_vectors:
            corpus_vectors[model_spec] = encode_corpus(
                encoder(model_spec), dataset.corpus, show_progress=spec.show_progress
            ).vectors
        return corpus_vectors[model_spec]

    def queries_of(model_spec: str) -> EncodedQueries:
        if model_spec not in queries:
            logger.info("encoding %d queries one at a time with %s", len(texts), model_spec)
            queries[model_spec] = encode_queries_timed(encoder(model_spec), texts)
        return queries[model_spec]

    import_faiss()  # loaded before limit_threads, so its OpenMP pool is found and limited
    with limit_threads(spec.threads):
        machine = bench_machine(spec.threads)
        _, teacher_top = exact_search(queries_of(spec.teacher).vectors, docs_of(spec.teacher), TOP_K)
        context = RunContext(spec, query_ids, qrels, DocIdMap([doc.id for doc in dataset.corpus]),
                             teacher_top.tolist())  # fmt: skip
        runs = []
        for entry in spec.encoders:  # all encoding first, with its own progress bars (rich shows one at a time)
            encoded, docs = queries_of(entry.spec), docs_of(entry.doc_spec or entry.spec)
            _, own_top = exact_search(encoded.vectors, docs, TOP_K)
            runs.append(EncoderRun(entry, docs, encoded, own_top.tolist(), precisions[entry.label],
                                   encoder(entry.spec).model_bytes()))  # fmt: skip
        rows, skipped = sweep_all(context, runs, {factory: sweep_grid(factory, sweep) for factory in spec.indexes})
    if not rows:
        raise ValueError(f"no configuration could be built: {'; '.join(s['reason'] for s in skipped)}")
    mark_pareto(rows)
    exact_vs_teacher = {run.entry.label: knn_recall(run.exact_top, context.teacher_top, TOP_K) for run in runs}
    exact_top = {run.entry.label: run.exact_top for run in runs}
    overlap = {
        label: knn_recall(exact_top[label], exact_top[fp32], TOP_K) if fp32 and fp32 != label else None
        for label, fp32 in counterparts.items()
    }
    losses = loss_split(rows, spec.encoders, exact_vs_teacher, overlap, counterparts, precisions)
    write_outputs(spec, BenchResult(rows, losses, skipped, dataset.name, len(query_ids), machine), out_dir)
    return rows


def sweep_all(
    context: RunContext, runs: list[EncoderRun], grids: dict[str, list[tuple[dict[str, float], bool]]]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """`bench_index` for every encoder and factory, under one progress bar; a factory that cannot be trained on
    this corpus is skipped (and reported) rather than failing the run."""
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    total = len(runs) * sum(len(grid) for grid in grids.values())
    with make_progress(context.spec.show_progress) as progress:
        task = progress.add_task("benchmarking", total=total, info="")
        for run in runs:
            for factory, grid in grids.items():
                progress.update(task, info=f"{run.entry.label} {factory}: building")
                try:
                    rows += bench_index(context, run, factory, grid,
                                        lambda info: progress.update(task, advance=1, info=info))  # fmt: skip
                except IndexBuildError as err:  # e.g. more IVF lists or PQ centroids than documents to train on
                    logger.warning("skipping %s on %s: %s", factory, run.entry.label, err)
                    skipped.append({"encoder": run.entry.label, "index": factory, "reason": str(err)})
                    progress.update(task, advance=len(grid))
    return rows, skipped
