"""Open an index directory as `semsearch serve` does, in a fresh process, and measure what it costs resident and how
fast it answers with its vector file's pages warm and evicted.

Run as `python -m search.bench.scale.probe INDEX_DIR QUERIES.npy TRUTH.npy [options]`; prints one JSON object. The
directory's encoder must be a fake one (`fake:DIM`, no model): the queries are given as vectors, searched through
`Pipeline.search_vectors_timed` and turned into hits with their documents read from the store (`Pipeline.hits`),
the steps a served query takes after encoding.

Memory: the process's anonymous and file-backed resident bytes (/proc/self/status) are read after the imports and
again after loading the directory and running the warm queries; each file of the directory is counted by its
resident pages in this process's mappings (/proc/self/smaps through psutil). `resident_bytes` = the growth of
anonymous memory + the mapped pages of every directory file but the vector file, which is reported apart.

Cold pages: before each cold query the vector file's pages are dropped from this process (`MADV_DONTNEED`) and
from the kernel's page cache (`POSIX_FADV_DONTNEED`; clean pages, so they go), so its rescoring reads come from the
disk; the rest of the index stays warm. Timed twice, on different queries: page faults one at a time (the default),
and with the vector file's `prefetch` on (each query's pages requested together).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from indexes.faiss_index import openmp_threads
from indexes.store import DOCS_DB, VECTORS_FILE
from search.evaluation.metrics import knn_recall
from search.pipeline import Pipeline
from semsearch_common.machine import release_freed_memory
from semsearch_common.threads import limit_threads


def status_bytes() -> dict[str, int]:
    """RssAnon, RssFile and RssShmem of this process, in bytes (Linux); zeros elsewhere."""
    fields = {"RssAnon": 0, "RssFile": 0, "RssShmem": 0}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in fields:
                fields[name] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return {"anon": fields["RssAnon"], "file": fields["RssFile"], "shmem": fields["RssShmem"]}


def mapped_by_file(folder: Path) -> dict[str, int]:
    """Resident bytes of this process's mappings of each file in `folder` (name -> bytes)."""
    root = str(folder.resolve())
    out: dict[str, int] = {}
    for mapping in psutil.Process().memory_maps(grouped=True):
        path = Path(mapping.path)
        if str(path.parent) == root:
            out[path.name] = out.get(path.name, 0) + mapping.rss
    return out


def timed_queries(pipeline: Pipeline, queries: np.ndarray, k: int, evict: bool) -> tuple[np.ndarray, np.ndarray]:
    """Seconds per query (search, rescoring and the hits' documents) and the positions found."""
    seconds = np.empty(len(queries))
    found = np.empty((len(queries), k), dtype=np.int64)
    vectors = pipeline.stored.vectors
    for i, query in enumerate(queries):
        if evict and vectors is not None:
            vectors.evict()
        started = time.perf_counter()
        result = pipeline.search_vectors_timed(query[None, :], k)
        pipeline.hits(result.scores, result.positions)
        seconds[i] = time.perf_counter() - started
        found[i] = result.positions[0]
    return seconds, found


def probe(
    index_dir: Path, queries: np.ndarray, truth: np.ndarray, k: int, warm: int, cold: int, mmap: bool,
    params: dict[str, float],
) -> dict[str, Any]:  # fmt: skip
    """Load, run `warm` queries (cycling through `queries`), measure memory, then time `cold` queries."""
    release_freed_memory()
    before = status_bytes()
    started = time.perf_counter()
    pipeline = Pipeline.load(index_dir, threads=1, search_params=params or None, mmap=mmap)
    load_s = time.perf_counter() - started
    n = pipeline.stored.index.ntotal
    rows = np.arange(warm) % len(queries)
    warm_s, found = timed_queries(pipeline, queries[rows], k, evict=False)
    recall = knn_recall(found[: len(queries)].tolist(), truth[: min(warm, len(queries))].tolist(), k)
    release_freed_memory()
    after = status_bytes()
    files = mapped_by_file(index_dir)
    vector_resident = files.pop(VECTORS_FILE, 0)
    anon_growth = after["anon"] - before["anon"]
    resident = anon_growth + sum(files.values())
    cold_s, _ = timed_queries(pipeline, queries[:cold], k, evict=True) if cold else (np.empty(0), None)
    prefetched_s = np.empty(0)
    if cold and pipeline.stored.vectors is not None:  # the same, with each query's pages requested at once
        vectors = replace(pipeline.stored.vectors, prefetch=True)
        prefetching = Pipeline(pipeline.encoder, replace(pipeline.stored, vectors=vectors), pipeline.search_params)
        prefetched_s, _ = timed_queries(prefetching, queries[cold : 2 * cold], k, evict=True)
    on_disk = {path.name: path.stat().st_size for path in index_dir.iterdir() if path.is_file()}
    return {
        "n": n,
        "mmap": mmap,
        "search_params": pipeline.search_params,
        "rescore": pipeline.rescore_source,
        "load_s": load_s,
        "warm_queries": warm,
        f"recall@{k}": recall,
        "warm_ms_p50": float(np.percentile(warm_s[len(queries) // 10 :], 50) * 1e3),
        "warm_ms_p95": float(np.percentile(warm_s[len(queries) // 10 :], 95) * 1e3),
        "cold_queries": cold,
        "cold_ms_p50": float(np.percentile(cold_s, 50) * 1e3) if cold else None,
        "cold_ms_p95": float(np.percentile(cold_s, 95) * 1e3) if cold else None,
        "cold_prefetch_ms_p50": float(np.percentile(prefetched_s, 50) * 1e3) if len(prefetched_s) else None,
        "cold_prefetch_ms_p95": float(np.percentile(prefetched_s, 95) * 1e3) if len(prefetched_s) else None,
        "anon_growth_bytes": anon_growth,
        "file_growth_bytes": after["file"] - before["file"],
        "mapped_by_file": files,
        "vector_file_resident_bytes": vector_resident,
        "resident_bytes": resident,
        "resident_bytes_per_vector": resident / n,
        "on_disk_bytes": on_disk,
        "doc_store_bytes": on_disk.get(DOCS_DB, 0),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index_dir", type=Path)
    parser.add_argument("queries", type=Path)
    parser.add_argument("truth", type=Path)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--warm", type=int, default=1000, help="warm queries before memory is read")
    parser.add_argument("--cold", type=int, default=200, help="queries timed with the vector file's pages evicted")
    parser.add_argument("--mmap", action="store_true", help="memory-map index.faiss (serve --mmap)")
    parser.add_argument("--params", default="{}", help="search parameters as a JSON object")
    args = parser.parse_args(argv)
    queries = np.load(args.queries)
    truth = np.load(args.truth)
    with limit_threads(1), openmp_threads(1):
        result = probe(args.index_dir, queries, truth, args.k, args.warm, args.cold, args.mmap,
                       json.loads(args.params))  # fmt: skip
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
