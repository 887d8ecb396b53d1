"""The Ray engine measured: corpus encoding and sharded index builds with 1 and 2 workers, and memory-mapped serving.

    PYTHONPATH=benchmarks/distributed python -m distributed_bench --out DIR [--steps encode,build,mmap]

(from the repository root, against the installed package with the ray extra).

- encode: SciFact encoded locally and on Ray (1 worker x 2 threads, 2 workers x 1 thread), no cache: wall time,
  docs/s, peak RSS of each Ray worker process (sampled), and the largest difference from the local vectors.
- build: a SciFact index and a 1 M-vector corpus grown from real SciFact embeddings (`search.bench.scale`'s
  generator) built locally and from shards on Ray (1 and 2 workers): wall time, merged index bytes, and recall@10 of
  the Ray build against the local one (the same trained index: it must be 1.0).
- mmap: each merged on-disk index served memory-mapped in a fresh process: resident memory after loading and after
  1,000 queries against the index's size on disk.

Results go to `<out>/results.json` and `<out>/results.md`; everything runs on the local machine's cores
(`ray.init` local, `num_cpus` = the cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from semsearch_common.atomic import write_json_atomic, write_text_atomic
from semsearch_common.machine import machine_info
from semsearch_common.tables import markdown_table

logger = logging.getLogger(__name__)

WORKER_LAYOUTS = ((1, 2), (2, 1))  # (workers, threads per worker): two cores split both ways
SAMPLE_S = 0.2


class RaySampler:
    """Peak RSS of every Ray worker process (command line `ray::...`), sampled in a thread."""

    def __init__(self) -> None:
        self.peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for process in psutil.process_iter(["pid", "cmdline"]):
                try:
                    cmd = " ".join(process.info["cmdline"] or [])
                    if not cmd.startswith("ray::"):
                        continue
                    rss = process.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                name = cmd.split()[0]
                old = self.peaks.get(process.info["pid"], (name, 0))
                self.peaks[process.info["pid"]] = (name if name != "ray::IDLE" else old[0], max(old[1], rss))
            self._stop.wait(SAMPLE_S)

    def __enter__(self) -> RaySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def busy_workers(self) -> list[dict[str, Any]]:
        """Workers that ran our code (an actor or task name, not only `ray::IDLE`), largest first."""
        rows = [{"pid": pid, "name": name, "peak_rss_mb": rss / 1e6} for pid, (name, rss) in self.peaks.items()]
        return sorted((r for r in rows if r["name"] != "ray::IDLE"), key=lambda r: -r["peak_rss_mb"])


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    box: dict[str, float] = {}
    started = time.perf_counter()
    yield box
    box["seconds"] = time.perf_counter() - started


def bench_encode(dataset_name: str, encoder_spec: str, batch_size: int) -> dict[str, Any]:
    """SciFact encoded locally (2 threads) and on Ray per worker layout, without the cache."""
    from compression.encoders import load_encoder
    from search.data.datasets import load_dataset
    from search.distributed.encode import encode_corpus_ray
    from search.distributed.engine import RaySpec, ray_session
    from search.embeddings import encode_corpus

    dataset = load_dataset(dataset_name)
    n = len(dataset.corpus)
    rows: list[dict[str, Any]] = []
    with timed() as local_time:
        local = encode_corpus(load_encoder(encoder_spec, threads=2), dataset.corpus, batch_size=batch_size,
                              use_cache=False, show_progress=False)  # fmt: skip
    rss_mb = psutil.Process().memory_info().rss / 1e6
    rows.append({"engine": "local", "workers": 1, "threads_per_worker": 2, "seconds": local_time["seconds"],
                 "docs_per_s": n / local_time["seconds"], "peak_rss_mb_per_worker": [rss_mb],
                 "max_abs_diff_vs_local": 0.0})  # fmt: skip
    for workers, threads in WORKER_LAYOUTS:
        spec = RaySpec(workers=workers, threads_per_worker=threads, batch_size=batch_size)
        with ray_session(spec), RaySampler() as sampler, timed() as took:
            ray_result = encode_corpus_ray(encoder_spec, dataset.corpus, spec, use_cache=False, show_progress=False)
        rows.append({
            "engine": "ray", "workers": workers, "threads_per_worker": threads, "seconds": took["seconds"],
            "docs_per_s": n / took["seconds"],
            "peak_rss_mb_per_worker": [w["peak_rss_mb"] for w in sampler.busy_workers()[:workers]],
            "max_abs_diff_vs_local": float(np.abs(ray_result.vectors - local.vectors).max()),
        })  # fmt: skip
        logger.info("encode %s: %s", encoder_spec, rows[-1])
    return {"dataset": dataset_name, "documents": n, "encoder": encoder_spec, "batch_size": batch_size, "rows": rows}


def recall_at_10(reference: Any, candidate: Any, queries: np.ndarray, nprobe: int) -> tuple[float, bool]:
    """Recall@10 of `candidate` against `reference` on `queries` (both searched with `nprobe`), and whether their
    top-10 ids are identical query by query."""
    from indexes.faiss_index import apply_search_params

    for index in (reference, candidate):
        apply_search_params(index, {"nprobe": nprobe})
    _, want = reference.search(queries, 10)
    _, got = candidate.search(queries, 10)
    overlap = np.mean([len(set(w) & set(g)) / 10 for w, g in zip(want, got, strict=True)])
    return float(overlap), bool((want == got).all())


def bench_build(name: str, vectors: np.ndarray, queries: np.ndarray, factory: str, shards: int, nprobe: int,
                work: Path) -> dict[str, Any]:  # fmt: skip
    """`factory` on `vectors` built locally and from `shards` shards on Ray per worker layout; the merged on-disk
    index of each Ray build is kept under `work` for the mmap step."""
    from indexes.faiss_index import IndexSpec, build_index
    from search.distributed.build import ShardedBuilder, ShardSpec
    from search.distributed.engine import RaySpec, ray_session

    spec = IndexSpec(factory, train_sample=100_000, seed=0)
    rows: list[dict[str, Any]] = []
    with timed() as took:
        local = build_index(vectors, spec).index
    rows.append({"engine": "local", "workers": 1, "seconds": took["seconds"], "recall@10_vs_local": 1.0,
                 "identical_top10": True, "merged_bytes": None})  # fmt: skip
    for workers, threads in WORKER_LAYOUTS:
        ray_spec = RaySpec(workers=workers, threads_per_worker=threads)
        folder = work / f"{name}-{workers}w"
        with ray_session(ray_spec), RaySampler() as sampler, timed() as took:
            builder = ShardedBuilder(folder, ShardSpec(shards), ray_spec)
            built = builder(vectors, spec)
        recall, identical = recall_at_10(local, built.index, queries, nprobe)
        files = [p for p in folder.iterdir() if p.name in ("merged.index", "lists.ivfdata")]
        rows.append({
            "engine": "ray", "workers": workers, "threads_per_worker": threads, "shards": shards,
            "merge": builder.merged_kind, "seconds": took["seconds"], "train_seconds": built.train_seconds,
            "fill_and_merge_seconds": built.add_seconds, "recall@10_vs_local": recall, "identical_top10": identical,
            "merged_bytes": sum(p.stat().st_size for p in files), "index_folder": str(folder),
            "peak_rss_mb_per_worker": [w["peak_rss_mb"] for w in sampler.busy_workers()[:workers]],
        })  # fmt: skip
        logger.info("build %s %s: %s", name, factory, rows[-1])
    return {"corpus": name, "vectors": len(vectors), "dim": int(vectors.shape[1]), "factory": factory,
            "nprobe": nprobe, "rows": rows}  # fmt: skip


MMAP_PROBE = r"""
import json, sys, time, numpy as np, psutil, faiss
from indexes.faiss_index import apply_search_params
path, queries_path, nprobe = sys.argv[1], sys.argv[2], int(sys.argv[3])
me = psutil.Process()
before = me.memory_info().rss
index = faiss.read_index(path, faiss.IO_FLAG_ONDISK_SAME_DIR)  # on-disk lists: always mapped
loaded = me.memory_info().rss
apply_search_params(index, {"nprobe": nprobe})
queries = np.load(queries_path)
started = time.perf_counter()
for q in queries:
    index.search(q[None, :], 10)
seconds = time.perf_counter() - started
after = me.memory_info().rss
mapped = sum(m.rss for m in me.memory_maps() if m.path.endswith(".ivfdata"))
print(json.dumps({"rss_before_mb": before / 1e6, "rss_loaded_mb": loaded / 1e6,
                  "rss_after_queries_mb": after / 1e6, "ivfdata_resident_mb": mapped / 1e6,
                  "queries": len(queries), "ms_per_query": 1e3 * seconds / len(queries)}))
"""


def bench_mmap(folder: Path, queries: np.ndarray, nprobe: int) -> dict[str, Any]:
    """Serve `folder`'s merged on-disk index memory-mapped in a fresh process: resident memory vs size on disk."""
    with tempfile.TemporaryDirectory() as tmp:
        queries_path = Path(tmp) / "queries.npy"
        np.save(queries_path, queries.astype(np.float32))
        out = subprocess.run(
            [sys.executable, "-c", MMAP_PROBE, str(folder / "merged.index"), str(queries_path), str(nprobe)],
            capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    on_disk = sum((folder / name).stat().st_size for name in ("merged.index", "lists.ivfdata"))
    return {"folder": folder.name, "on_disk_mb": on_disk / 1e6, **probe}


def scifact_vectors(dataset_name: str) -> np.ndarray:
    """The teacher's cached SciFact corpus vectors (the main job computed them)."""
    from compression.encoders import load_encoder
    from search.data.datasets import corpus_fingerprint, load_dataset
    from search.embeddings import embedding_cache_key, load_cached_embeddings

    dataset = load_dataset(dataset_name)
    key = embedding_cache_key(load_encoder("teacher").identity(), corpus_fingerprint(dataset.corpus))
    cached = load_cached_embeddings(key, len(dataset.corpus))
    if cached is None:
        raise ValueError("the teacher's SciFact vectors are not cached: run `semsearch run --dataset scifact` first")
    return cached.vectors


def write_report(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", result)
    lines = [f"# Ray engine on {result['machine'].get('cpu')} ({result['machine'].get('cores')} cores)", ""]
    if "encode" in result:
        enc = result["encode"]
        lines += [f"## Encoding {enc['dataset']} ({enc['documents']} docs, {enc['encoder']}, no cache)", ""]
        lines.append(markdown_table(
            ["engine", "workers x threads", "seconds", "docs/s", "peak RSS per worker MB", "max |diff| vs local"],
            [[r["engine"], f"{r['workers']} x {r['threads_per_worker']}", f"{r['seconds']:.1f}",
              f"{r['docs_per_s']:.1f}", ", ".join(f"{m:.0f}" for m in r["peak_rss_mb_per_worker"]),
              f"{r['max_abs_diff_vs_local']:.2e}"]
             for r in enc["rows"]]))  # fmt: skip
        lines.append("")
    for build in result.get("builds", []):
        lines += [f"## Building {build['factory']} on {build['corpus']} ({build['vectors']:,} x {build['dim']})", ""]
        lines.append(markdown_table(
            ["engine", "workers", "seconds", "merge", "merged MB", "recall@10 vs local", "identical top-10",
             "peak RSS per worker MB"],
            [[r["engine"], str(r["workers"]), f"{r['seconds']:.1f}", r.get("merge", "-"),
              "-" if r["merged_bytes"] is None else f"{r['merged_bytes'] / 1e6:.1f}", f"{r['recall@10_vs_local']:.4f}",
              str(r["identical_top10"]), ", ".join(f"{m:.0f}" for m in r.get("peak_rss_mb_per_worker", []))]
             for r in build["rows"]]))  # fmt: skip
        lines.append("")
    if result.get("mmap"):
        lines += ["## Serving the merged index memory-mapped (fresh process, 1,000 single queries)", ""]
        lines.append(markdown_table(
            ["index", "on disk MB", "RSS before load MB", "after load", "after queries", "ivfdata resident MB",
             "ms/query"],
            [[m["folder"], f"{m['on_disk_mb']:.1f}", f"{m['rss_before_mb']:.0f}", f"{m['rss_loaded_mb']:.0f}",
              f"{m['rss_after_queries_mb']:.0f}", f"{m['ivfdata_resident_mb']:.1f}", f"{m['ms_per_query']:.2f}"]
             for m in result["mmap"]]))  # fmt: skip
    write_text_atomic(out / "results.md", "\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m distributed_bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/distributed"))
    parser.add_argument("--steps", default="encode,build,mmap")
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--encoder", default="minilm", help="encoder spec timed for encoding (the teacher: ~51 min)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--synthetic", type=int, default=1_000_000, help="vectors grown from SciFact's")
    parser.add_argument("--factory", default="IVF1024,PQ48", help="for the synthetic corpus")
    parser.add_argument("--scifact-factory", default="IVF64,PQ48")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--work", type=Path, default=None, help="where the merged indexes go (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    steps = set(args.steps.split(","))
    result: dict[str, Any] = {"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()}}
    work = args.work or Path(tempfile.mkdtemp(prefix="semsearch-distributed-"))
    if "encode" in steps:
        result["encode"] = bench_encode(args.dataset, args.encoder, args.batch_size)
        write_report(result, args.out)
    if "build" in steps or "mmap" in steps:
        from search.bench.scale.generators import make_vectors

        source = scifact_vectors(args.dataset)
        rng = np.random.default_rng(0)
        scifact_queries = source[rng.choice(len(source), 1000, replace=False)]
        corpora = [("scifact", source, scifact_queries, args.scifact_factory)]
        if args.synthetic:
            vectors, _, queries, _ = make_vectors(source, args.synthetic, 1000, seed=0)
            corpora.append((f"synthetic-{args.synthetic // 1000}k", vectors, queries, args.factory))
        result["builds"], result["mmap"] = [], []
        for name, vectors, queries, factory in corpora:
            build = bench_build(name, vectors, queries, factory, args.shards, args.nprobe, work)
            result["builds"].append(build)
            write_report(result, args.out)
            if "mmap" in steps:
                for row in build["rows"]:
                    if row["engine"] == "ray" and row.get("merge") == "ondisk":
                        result["mmap"].append(bench_mmap(Path(row["index_folder"]), queries, args.nprobe))
                        break
            write_report(result, args.out)
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
