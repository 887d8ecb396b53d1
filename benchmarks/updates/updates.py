"""Writes under load: upserts and deletes sent to a served SciFact corpus while clients search, then every pipeline
compared with a from-scratch rebuild of the final corpus.

    PYTHONPATH=. python benchmarks/updates/updates.py --encoder-dir runs/scifact/minilm-int8 --out benchmarks/updates

1. Index directories of SciFact with the encoder of `--encoder-dir` (embeddings from the cache), one per `--index`.
2. `semsearch serve --writes` on them (a subprocess, real HTTP), `--clients` threads searching (train queries, round
   robin over the pipelines): `--idle-seconds` idle, then while a writer sends the workload (`workload.py`: PUT
   batches and DELETEs) and until the server has encoded every pending document. Latency per request as the client
   sees it; the server's documents/s from GET /documents/status.
3. The server stopped; each directory opened as a restart would (its store replayed onto its index), and a
   from-scratch build of the final corpus with the same factory; both searched with the same query vectors (SciFact
   train queries). Per pipeline: the share of queries whose top-10 ids agree at every rank where the two scores
   differ by more than `--tolerance`, recall@10 of each against the other, and each against exact search of the
   final corpus.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import Put, as_json, final_corpus, make_workload  # noqa: E402

from compression.encoders import load_encoder_from_identity  # noqa: E402
from indexes.exact import exact_search  # noqa: E402
from indexes.faiss_index import IndexSpec, parse_search_params  # noqa: E402
from search.data.datasets import load_dataset  # noqa: E402
from search.data.records import Dataset  # noqa: E402
from search.embeddings import CorpusEmbeddings, encode_corpus  # noqa: E402
from search.pipeline import Pipeline, build_index_dir  # noqa: E402
from semsearch_common.machine import machine_info  # noqa: E402

KEY = "bench-key"
# the exact index, a graph, the main job's compressed codes (1-bit, rescored from the vector file) and IVF over them
DEFAULT_INDEXES = ["flat=Flat", "hnsw=HNSW32", "rabitq=RaBitQfs@oversample=8", "ivf=IVF64,RaBitQfs@nprobe=16"]
HEADERS = {"Authorization": f"Bearer {KEY}"}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class Clients:
    """`n` threads searching the server in a loop, recording (time, pipeline, latency ms)."""

    def __init__(self, base: str, queries: list[str], pipelines: list[str], n: int, think_ms: float = 0) -> None:
        self.base, self.queries, self.pipelines, self.n = base, queries, pipelines, n
        self.think_s = think_ms / 1e3
        self.samples: list[tuple[float, str, float]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _loop(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.base, headers=HEADERS, timeout=60) as client:
            while not self._stop.is_set():
                name = rng.choice(self.pipelines)
                body = {"query": rng.choice(self.queries), "k": 10, "pipeline": name}
                started = time.perf_counter()
                try:
                    ok = client.post("/search", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = (time.perf_counter() - started) * 1e3
                with self._lock:
                    if ok:
                        self.samples.append((time.time(), name, elapsed))
                    else:
                        self.errors += 1
                if self.think_s:
                    self._stop.wait(rng.uniform(0.5, 1.5) * self.think_s)

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(self.n)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def between(self, start: float, end: float) -> list[float]:
        with self._lock:
            return [ms for t, _, ms in self.samples if start <= t < end]


def wait_ready(base: str, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(base + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not become ready")


def start_server(dirs: dict[str, Path], port: int, log: Path) -> subprocess.Popen:
    command = ["semsearch", "serve", "--port", str(port), "--writes", "--api-key", KEY]
    command += ["--limit", "max_write_docs=1000"]
    for name, path in dirs.items():
        command += ["--pipeline", f"{name}={path}"]
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)


def write_all(base: str, ops: list[Any], acks: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=base, headers=HEADERS, timeout=300) as client:
        for op in ops:
            if isinstance(op, Put):
                response = client.put("/documents", json={"documents": [as_json(d) for d in op.docs]})
                response.raise_for_status()
                acks.append({"put": len(op.docs), **response.json(), "at": time.time()})
            else:
                for doc_id in op.ids:
                    response = client.delete(f"/documents/{doc_id}")
                    if response.status_code not in (200, 404):
                        response.raise_for_status()
                acks.append({"delete": len(op.ids), "at": time.time()})


def status(base: str) -> dict[str, Any]:
    return httpx.get(base + "/documents/status", headers=HEADERS, timeout=30).json()


def spec_of(text: str) -> IndexSpec:
    """`FACTORY[@name=value,...]` as an IndexSpec."""
    factory, _, params = text.partition("@")
    return IndexSpec(factory, search_params=parse_search_params(params) if params else {})


def served_vectors(pipeline: Pipeline, ids: list[str]) -> np.ndarray:
    """The vectors `pipeline` holds for `ids` (float32 as its index stores them when Flat, else its full-precision
    rows: the vector file's fp16 rows, and rows written since its last compaction)."""
    positions = pipeline.stored.docs.positions(ids)
    order = np.argsort(positions)
    vectors = np.empty((len(ids), pipeline.stored.index.d), dtype=np.float32)
    if pipeline.meta["factory"] == "Flat":
        vectors[order] = np.stack([pipeline.stored.index.reconstruct(int(p)) for p in positions[order]])
    else:
        assert pipeline.live is not None
        vectors[order] = pipeline.live.rows(positions[order])
    return vectors


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / max(1, len(t)) for f, t in zip(found, truth, strict=True)]))


def agreement(
    live: tuple[np.ndarray, list[list[str]]], rebuilt: tuple[np.ndarray, list[list[str]]], tolerance: float
) -> dict[str, float]:
    """Share of queries whose ids agree at every rank where the scores differ by more than `tolerance`, and recall@10
    of one against the other."""
    (live_scores, live_ids), (reb_scores, reb_ids) = live, rebuilt
    same = 0
    overlap = []
    for q, (a, b) in enumerate(zip(live_ids, reb_ids, strict=True)):
        ok = len(a) == len(b) and all(
            x == y or abs(float(live_scores[q, r]) - float(reb_scores[q, r])) <= tolerance
            for r, (x, y) in enumerate(zip(a, b, strict=True))
        )
        same += ok
        overlap.append(len(set(a) & set(b)) / max(1, len(b)))
    return {"same_ranking": same / len(live_ids), "recall@10_vs_rebuild": float(np.mean(overlap))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--encoder-dir", type=Path, default=Path("runs/scifact/minilm-int8"))
    parser.add_argument("--index", action="append", dest="indexes", help="NAME=FACTORY[@PARAMS] (repeatable)")
    parser.add_argument("--upserts", type=int, default=10_000)
    parser.add_argument("--deletes", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--think-ms", type=float, default=100, help="each client's pause between requests (mean)")
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--tolerance", type=float, default=2e-3)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--work", type=Path, default=Path("runs/updates"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/updates"))
    args = parser.parse_args()
    indexes = dict(item.split("=", 1) for item in (args.indexes or DEFAULT_INDEXES))

    dataset = load_dataset(args.dataset)
    identity = json.loads((args.encoder_dir / "meta.json").read_text())["encoder"]
    encoder = load_encoder_from_identity(identity)
    args.work.mkdir(parents=True, exist_ok=True)
    dirs = {}
    for name, factory in indexes.items():
        dirs[name] = args.work / f"live-{name}"
        build_index_dir(dataset, encoder, spec_of(factory), dirs[name], show_progress=False)
    ops = make_workload(dataset.corpus, args.upserts, args.deletes, args.batch)
    ids, texts, _ = dataset.split_queries("train")

    base = f"http://127.0.0.1:{args.port}"
    server = start_server(dirs, args.port, args.work / "server.log")
    try:
        wait_ready(base, server)
        clients = Clients(base, texts, list(dirs), args.clients, args.think_ms)
        clients.start()
        idle_start = time.time()
        time.sleep(args.idle_seconds)
        write_start = time.time()
        acks: list[dict[str, Any]] = []
        writer = threading.Thread(target=write_all, args=(base, ops, acks))
        writer.start()
        writer.join()
        acked = time.time()
        while status(base)["pending"] or status(base)["in_flight"]:
            time.sleep(1)
        settled = time.time()
        clients.stop()
        final_status = status(base)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(120)

    idle, busy = clients.between(idle_start, write_start), clients.between(write_start, settled)
    corpus = final_corpus(dataset.corpus, ops)
    final = Dataset(f"{args.dataset}-final", corpus)
    query_vectors = encoder.encode(texts, kind="query", batch_size=64)
    # The rebuild indexes the very vectors the server encoded (the first pipeline's exact rows): an int8-dynamic
    # encoder's output depends on the batch a text is encoded in, which would blur the comparison of the indexes.
    # `encoder_batch_effect` measures that separately: the same documents re-encoded from scratch.
    exact_vectors = served_vectors(Pipeline.load(dirs[next(iter(dirs))]), [d.id for d in corpus])
    fresh = encode_corpus(encoder, corpus, use_cache=False, show_progress=False).vectors
    cosines = np.sum(fresh * exact_vectors, axis=1)
    encoder_batch_effect = {"min_cosine": float(cosines.min()), "median_cosine": float(np.median(cosines))}
    results: dict[str, Any] = {}
    for name, factory in indexes.items():
        rebuilt_dir = args.work / f"rebuilt-{name}"
        embeddings = CorpusEmbeddings(exact_vectors, "served-vectors", False, 0.0)
        build_index_dir(final, encoder, spec_of(factory), rebuilt_dir, show_progress=False, embeddings=embeddings)
        live = Pipeline.load(dirs[name])
        rebuilt = Pipeline.load(rebuilt_dir)
        live_found = live.search_vectors_timed(query_vectors, 10)
        reb_found = rebuilt.search_vectors_timed(query_vectors, 10)
        live_ids, reb_ids = live.ids_of(live_found.positions), rebuilt.ids_of(reb_found.positions)
        _, exact_pos = exact_search(query_vectors, exact_vectors, 10)
        exact_ids = [[corpus[p].id for p in row] for row in exact_pos]
        live_docs = sorted(live.stored.docs.ids(live.stored.docs.live_positions())[0])
        results[name] = {
            "factory": factory,
            **agreement((live_found.scores, live_ids), (reb_found.scores, reb_ids), args.tolerance),
            "recall@10_vs_exact_live": recall(live_ids, exact_ids),
            "recall@10_vs_exact_rebuilt": recall(reb_ids, exact_ids),
            "documents_equal": live_docs == sorted(d.id for d in corpus),
            "pipeline_status": final_status["pipelines"][name],
        }
    summary = {
        "machine": machine_info(),
        "dataset": args.dataset,
        "encoder": identity["name"],
        "upserts": args.upserts,
        "deletes": args.deletes,
        "batch": args.batch,
        "clients": args.clients,
        "final_documents": len(corpus),
        "seconds": {"write_acks": acked - write_start, "settle": settled - write_start},
        "encode": final_status["throughput"],
        "latency_ms": {
            phase: {"n": len(v), "p50": percentile(v, 50), "p99": percentile(v, 99), "qps": len(v) / max(1e-9, d)}
            for phase, v, d in (
                ("idle", idle, write_start - idle_start),
                ("writing", busy, settled - write_start),
            )
        },
        "client_errors": clients.errors,
        "encoder_batch_effect": encoder_batch_effect,
        "pipelines": results,
        "tolerance": args.tolerance,
        "queries": len(ids),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "updates.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
