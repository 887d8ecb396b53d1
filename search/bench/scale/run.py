"""The scale run: generate the corpus for each N, exact ground truth, then build, time and score every index."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from compression.encoders.fake import FakeEncoder
from indexes.exact import exact_search
from indexes.faiss_index import IndexSpec, build_index, bytes_per_vector, import_faiss, serialized_size
from indexes.store import DisplayDoc, save_index_dir
from search.bench.ann.measure import Search, searcher
from search.bench.ann.spec import BATCH
from search.bench.scale.generators import GEN_BLOCK, load_source_vectors, make_generator, resolve_target_cosine
from search.bench.scale.report import write_outputs
from search.bench.scale.spec import ScaleBenchSpec, params_for, parse_skip, resolve_factory, validate_spec
from search.bench.scale.stats import profile_sizes, real_profile, source_neighbour_profile, top1_topk, vector_stats
from search.evaluation.metrics import knn_recall
from semsearch_common.machine import machine_info, release_freed_memory, track_peak_rss
from semsearch_common.threads import limit_threads
from semsearch_common.timing import time_each, time_pass

logger = logging.getLogger(__name__)

LATENCY_WARMUP = 10


def batch_qps(search: Search, queries: np.ndarray, k: int, repeats: int) -> float:
    """Queries per second searched in batches of BATCH (FAISS's default thread team: the run's threads), fastest of
    `repeats` passes over every query."""
    return len(queries) / time_pass(lambda: [search(queries[s : s + BATCH], k) for s in range(0, len(queries), BATCH)],
                                    repeats=repeats)  # fmt: skip


def latency_ms(search: Search, queries: np.ndarray, k: int, repeats: int) -> dict[str, float]:
    """Per-query latency at batch 1: each repeat times every query alone; the repeat with the lowest median wins."""
    timed = time_each(lambda row: search(row[None, :], k), list(queries), warmup=LATENCY_WARMUP,
                      repeats=repeats, best="per_pass")  # fmt: skip
    return {
        "latency_ms_p50": timed.percentile_ms(50),
        "latency_ms_p95": timed.percentile_ms(95),
        "latency_ms_mean": float(timed.seconds.mean() * 1000.0),
    }


SNIPPET = ("Synthetic document text of the length a search hit shows: a title, then the first three hundred "
           "characters of the body, stored per document in the SQLite document store beside the index and read back "
           "for the hits of every query, as the product does for a real corpus. ") * 2  # fmt: skip


def synthetic_docs(n: int) -> tuple[list[str], list[DisplayDoc]]:
    """Ids and display fields for n synthetic documents (titles of ~25 characters, snippets of 300)."""
    ids = [f"doc-{i:09d}" for i in range(n)]
    docs = [DisplayDoc(f"synthetic document {i}", SNIPPET[i % 97 : i % 97 + 300]) for i in range(n)]
    return ids, docs


def measure_served(
    index: Any, base: np.ndarray, params: dict[str, float], factory: str, spec: ScaleBenchSpec, work_dir: Path
) -> dict[str, Any]:
    """Save `index` as an index directory (fp16 vector file, document store) in `work_dir`, measure it in a fresh
    process (`search.bench.scale.probe`), then delete it."""
    folder = work_dir / "index"
    ids, docs = synthetic_docs(len(base))
    encoder = FakeEncoder(dim=base.shape[1]).identity()
    started = time.perf_counter()
    save_index_dir(folder, index, ids, docs, {"factory": factory, "encoder": encoder, "search_params": params},
                   vectors=base)  # fmt: skip
    save_s = time.perf_counter() - started
    del ids, docs
    command = [sys.executable, "-m", "search.bench.scale.probe", str(folder), str(work_dir / "queries.npy"),
               str(work_dir / "truth.npy"), "--k", str(spec.k), "--warm", str(spec.warm_queries), "--cold",
               str(spec.cold_queries), *(["--mmap"] if spec.serve_mmap else [])]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the probe of {factory} failed: {done.stderr.strip()[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {**result, "save_s": save_s, "how_cold": "MADV_DONTNEED + POSIX_FADV_DONTNEED on vectors.npy per query"}


def measure(
    base: np.ndarray, queries: np.ndarray, truth: np.ndarray, template: str, factory: str, spec: ScaleBenchSpec,
    work_dir: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Build one index on `base`, then time it at batch 1 and score its top-k against the exact top-k; the peak RSS
    is this row's, from the build to the end of the timing. With `work_dir`, also measure it served from an index
    directory (`measure_served`)."""
    release_freed_memory()  # so the RSS before the build counts live data, not earlier rows' freed indexes
    params = params_for(factory, spec.search_params)
    index_spec = IndexSpec(factory, train_sample=spec.train_sample, seed=spec.seed, search_params=params)
    with track_peak_rss() as rss:
        started = time.perf_counter()
        built = build_index(base, index_spec)
        build_s = time.perf_counter() - started
        search = searcher(built.index, base, params)  # oversample: rescored from fp16 rows, as a vector file gives
        _, found = search(queries, spec.k)
        recall = knn_recall(found.tolist(), truth.tolist(), spec.k)
        timing = latency_ms(search, queries[: spec.latency_queries], spec.k, spec.repeats)
        timing["qps_batch64"] = batch_qps(search, queries, spec.k, spec.repeats)
    row = {
        "n": len(base),
        "index": template,
        "factory": factory,
        "search_params": params,
        "build_s": build_s,
        "train_s": built.train_seconds,
        "add_s": built.add_seconds,
        f"recall@{spec.k}": recall,
        **timing,
        "peak_rss_mb": rss.peak_mb,
        "rss_before_build_mb": rss.start_mb,
        "peak_rss_added_mb": rss.peak_mb - rss.start_mb,
        "peak_rss_scope": "this row",
        "bytes_per_vector": bytes_per_vector(built.index),
        "index_bytes": serialized_size(built.index),
    }
    if work_dir is not None:
        row["served"] = measure_served(built.index, base, params, factory, spec, work_dir)
        logger.info("N=%d %s served: %.1f B/vector resident, warm p50 %.3f ms, cold p50 %.3f ms", len(base), factory,
                    row["served"]["resident_bytes_per_vector"], row["served"]["warm_ms_p50"],
                    row["served"]["cold_ms_p50"] or float("nan"))  # fmt: skip
    del built
    logger.info("N=%d %s: build %.1fs, recall@%d %.4f, p50 %.3f ms, peak RSS %.0f MB", len(base), factory, build_s,
                spec.k, recall, timing["latency_ms_p50"], rss.peak_mb)  # fmt: skip
    return row


def scale_machine_info(threads: int) -> dict[str, Any]:
    """`semsearch_common.machine.machine_info` plus the library versions the numbers depend on (FAISS loaded first, so
    its
    OpenMP pool is listed)."""
    faiss = import_faiss()
    return {
        **machine_info(threads),
        "faiss": faiss.__version__,
        "faiss_compile_options": faiss.get_compile_options().strip(),
        "numpy": np.__version__,
    }


def describe_pools(pools: list[dict[str, Any]]) -> str:
    """The pools threadpoolctl limited, e.g. "threadpoolctl: openblas 1, openmp 1"."""
    return "threadpoolctl: " + ", ".join(f"{pool['internal_api']} {pool['num_threads']}" for pool in pools)


def vectors_method(spec: ScaleBenchSpec) -> str:
    """The generator recipe in words, for scale.json and scale.md."""
    shape = ("Gaussian with the covariance of the centred source embeddings" if spec.noise == "data"
             else "isotropic Gaussian")  # fmt: skip
    cosine = resolve_target_cosine(spec.generator, spec.target_cosine)
    if spec.generator == "noise":
        recipe = (
            "generator noise: corpus row i = normalise(source[i % n_sources] + noise), queries = "
            f"normalise(source[j] + noise) for {spec.queries} seeded random sources j"
        )
        target = "the target mean cosine of a copy to its source"
    else:
        recipe = (
            "generator mix: each vector = normalise(m + noise), m = normalise(w_1 source[i_1] + w_2 source[i_2] "
            "(+ w_3 source[i_3])), where i_1 is a uniform random source, the 1 or 2 partners (equal odds) are "
            f"distinct random picks among i_1's {spec.mix_neighbours} nearest other sources (exact cosine), and the "
            f"weights are Dirichlet({spec.mix_alpha:g}) sorted so i_1, the dominant source, gets the largest; "
            f"queries are {spec.queries} more vectors made the same way from another seed stream"
        )
        target = "the target mean cosine of a vector to its noise-free mixture m"
    return (
        f"{recipe}; noise is {shape}, scaled so E|noise|^2 = 1/c^2 - 1 with c = {cosine} ({target}); seed "
        f"{spec.seed}; vectors made in blocks of {GEN_BLOCK} rows, each from its own seed and with the same shapes "
        "whatever N, so each smaller corpus is an exact prefix of the larger ones"
    )


def run_scale_bench(
    spec: ScaleBenchSpec, out_dir: Path, on_row: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """For each N (ascending) generate the corpus, its exact top-k, then build, search and score every factory;
    the outputs are rewritten after every row so a long run leaves partial results. Everything runs with
    `spec.threads` BLAS/OpenMP threads."""
    source = load_source_vectors(spec.vectors)
    dim = source.shape[1]
    validate_spec(spec, dim)
    sizes = sorted(set(spec.sizes))
    skipped = set(parse_skip(spec.skip))
    result: dict[str, Any] = {
        "spec": {**asdict(spec), "vectors": str(spec.vectors), "search_params": dict(spec.search_params)},
        "vectors": {},
        "rows": [],
        "skipped": [],
        "machine": scale_machine_info(spec.threads),  # imports FAISS, so limit_threads finds its OpenMP pool
        "note": spec.note,
    }
    with limit_threads(spec.threads) as pools:
        result["machine"]["thread_control"] = describe_pools(pools)
        maker = make_generator(source, spec.generator, spec.noise, spec.target_cosine, spec.seed,
                               spec.mix_neighbours, spec.mix_alpha)  # fmt: skip
        queries, query_src = maker.queries(spec.queries)
        top1, topk = source_neighbour_profile(source, spec.k)
        profile: dict[str, dict[str, float | None]] = {
            str(m): {"real_top1": r1, "real_topk_last": rk, "synthetic_top1": None, "synthetic_topk_last": None}
            for m, (r1, rk) in real_profile(source, spec.k, spec.seed).items()
        }
        result["vectors"] = {
            "source": str(spec.vectors),
            "source_count": len(source),
            "dim": dim,
            "generator": spec.generator,
            "target_cosine": resolve_target_cosine(spec.generator, spec.target_cosine),
            "method": vectors_method(spec),
            "source_nearest_other_source_cosine": top1,
            "source_kth_other_source_cosine": topk,
            "profile_held_out_queries": profile_sizes(len(source), spec.k)[0],
            "profile_vs_n": profile,
            "per_size": {},
        }
        for n in sizes:
            # generated per size (each is a prefix of the next), so a row's memory reflects its own N
            started = time.perf_counter()
            base, base_src = maker.corpus(n)
            generation_s = time.perf_counter() - started
            started = time.perf_counter()
            _, truth = exact_search(queries, base, spec.k)
            stats = {
                "generation_s": generation_s,
                "ground_truth_s": time.perf_counter() - started,
                "copies_per_source": n / len(source),
                **vector_stats(source, base, base_src, queries, query_src, truth),
            }
            for m, row in profile.items():  # synthetic queries against the same-size prefix of the corpus
                if row["synthetic_top1"] is None and int(m) <= n:
                    row["synthetic_top1"], row["synthetic_topk_last"] = top1_topk(queries, base[: int(m)], spec.k)
            result["vectors"]["per_size"][str(n)] = stats
            logger.info("N=%d: exact top-%d in %.1fs; %s", n, spec.k, stats["ground_truth_s"], stats)
            work_dir = None
            if spec.index_dirs:
                out_dir.mkdir(parents=True, exist_ok=True)
                work_dir = Path(tempfile.mkdtemp(prefix=".scale-", dir=out_dir))
                np.save(work_dir / "queries.npy", queries)
                np.save(work_dir / "truth.npy", truth)
            for template in spec.indexes:
                factory = resolve_factory(template, n, dim, spec.pq_m)
                if (template, n) in skipped or (factory, n) in skipped:
                    result["skipped"].append({"n": n, "index": template, "factory": factory})
                    logger.info("N=%d %s: skipped", n, factory)
                else:
                    row = measure(base, queries, truth, template, factory, spec, work_dir)
                    result["rows"].append(row)
                    if on_row:
                        on_row(row)
                write_outputs(result, out_dir)
            del base, base_src, truth
            if work_dir is not None:
                shutil.rmtree(work_dir, ignore_errors=True)
    return result
