"""The fault run: a server taking writes killed with SIGKILL at a random moment of each of `--cycles` write batches;
after each restart, every acknowledged write must be there, nothing deleted may come back, and the indexes must
agree with the store.

    PYTHONPATH=. python benchmarks/updates/fault.py --encoder-dir runs/scifact/minilm-int8 --out benchmarks/updates

Each cycle: start `semsearch serve --writes` on the index directories (a fresh process: it replays what the last
one left), wait for the queue to drain, verify, then send one PUT of `--batch` documents followed by `--deletes`
DELETEs, and kill the server `U(0, --kill-within)` seconds after the PUT was sent (while it logs, encodes, adds to
FAISS, deletes, or compacts). A write counts as acknowledged once its response arrived; a write in flight at the
kill may or may not have happened (either state is accepted, never a mix: its id is then either its old document or
its new one).

Verified after every restart, against the ledger of acknowledged writes:
- every acknowledged upsert is readable (`GET /documents/{id}`) with its title and text, and is searchable;
- every acknowledged delete is 404, and no pipeline returns it when searched by its own text;
- per pipeline, the index agrees with the store: index vectors minus hidden positions = live documents, the same
  count in every pipeline, and the store's version is the same everywhere.
At the end the directories are checked offline too: each exact (Flat) index's top-10 equals exact search over the
store's live rows.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from updates import HEADERS, spec_of, start_server, status, wait_ready  # noqa: E402
from workload import Delete, Put, as_json, make_workload  # noqa: E402

from compression.encoders import load_encoder_from_identity  # noqa: E402
from indexes.exact import exact_search  # noqa: E402
from search.data.datasets import load_dataset  # noqa: E402
from search.pipeline import Pipeline, build_index_dir  # noqa: E402
from semsearch_common.machine import machine_info  # noqa: E402

INDEXES = {"flat": "Flat", "hnsw": "HNSW32", "ivf": "IVF64,RaBitQfs@nprobe=16"}


class Ledger:
    """What the server acknowledged: id -> the document it must hold (None: deleted); the writes in doubt (sent,
    not acknowledged: id -> the states allowed); and the last text each id was given (to search for it)."""

    def __init__(self, corpus: Any) -> None:
        self.expected: dict[str, dict[str, Any] | None] = {d.id: {"title": d.title, "text": d.text} for d in corpus}
        self.doubt: dict[str, list[dict[str, Any] | None]] = {}
        self.texts = {d.id: {"title": d.title, "text": d.text} for d in corpus}
        self.written: set[str] = set()  # every id a write was sent for

    def in_doubt(self, doc_id: str, new: dict[str, Any] | None) -> None:
        self.written.add(doc_id)
        self.doubt.setdefault(doc_id, [self.expected.get(doc_id)]).append(new)
        if new is not None:
            self.texts[doc_id] = new

    def acknowledged(self, doc_id: str, new: dict[str, Any] | None) -> None:
        self.expected[doc_id] = new
        self.doubt.pop(doc_id, None)


def send(base: str, op_put: Put, op_delete: Delete | None, ledger: Ledger, events: list[str]) -> None:
    """Send one PUT and the DELETEs, recording acknowledgements; stops at the first connection error."""
    docs = [as_json(d) for d in op_put.docs]
    for doc in docs:
        ledger.in_doubt(doc["id"], doc)
    try:
        with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as client:
            response = client.put("/documents", json={"documents": docs})
            if response.status_code != 202:
                events.append(f"PUT answered {response.status_code}")
                return
            for doc in docs:
                ledger.acknowledged(doc["id"], doc)
            events.append("put acked")
            for doc_id in op_delete.ids if op_delete else ():
                ledger.in_doubt(doc_id, None)
                response = client.delete(f"/documents/{doc_id}")
                if response.status_code in (200, 404):
                    ledger.acknowledged(doc_id, None)
            events.append("deletes acked")
    except httpx.HTTPError as err:
        events.append(f"connection lost: {type(err).__name__}")


def _matches(state: dict[str, Any] | None, got: dict[str, Any] | None) -> bool:
    if state is None or got is None:
        return state is None and got is None
    return got["title"] == state["title"] and state["text"].startswith(got["snippet"])


def verify(base: str, ledger: Ledger, sample: list[str]) -> dict[str, int]:
    """Check the served state against the ledger (module docstring); writes in doubt are resolved to the state the
    server holds (which must be one of those allowed). Returns counts of checks and failures."""
    deadline = time.time() + 600
    while (found := status(base))["pending"] or found["in_flight"] or found.get("compacting"):
        if time.time() > deadline:
            raise RuntimeError("the queue did not drain")
        time.sleep(0.5)
    counts = {"checked": 0, "in_doubt": len(ledger.doubt), "missing_acked": 0, "ghosts": 0, "index_store_mismatch": 0}
    pipelines = found["pipelines"]
    versions = {p["version"] for p in pipelines.values()}
    documents = {p["documents"] for p in pipelines.values()}
    counts["index_store_mismatch"] += int(len(versions) > 1 or len(documents) > 1)
    counts["index_store_mismatch"] += sum(p["index_ntotal"] - p["hidden"] != p["documents"] for p in pipelines.values())
    with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as client:
        for doc_id in sample:
            response = client.get(f"/documents/{doc_id}")
            got = response.json() if response.status_code == 200 else None
            counts["checked"] += 1
            allowed = ledger.doubt.get(doc_id, [ledger.expected.get(doc_id)])
            state = next((a for a in allowed if _matches(a, got)), "none")
            if state == "none":
                counts["missing_acked" if ledger.expected.get(doc_id) is not None else "ghosts"] += 1
                continue
            ledger.acknowledged(doc_id, state)  # type: ignore[arg-type]
            if state is None:  # deleted: no pipeline may return it, searched by its own last text
                text = ledger.texts.get(doc_id, {"title": "", "text": doc_id})
                query = f"{text['title']} {text['text']}"[:2000]
                for name in pipelines:
                    hits = client.post("/search", json={"query": query, "k": 10, "pipeline": name}).json()["hits"]
                    counts["ghosts"] += any(h["id"] == doc_id for h in hits)
    return counts


def offline_check(dirs: dict[str, Path], queries: np.ndarray) -> dict[str, float]:
    """Each Flat directory, opened as a restart would: its top-10 against exact search over the store's live rows."""
    out = {}
    for name, path in dirs.items():
        pipeline = Pipeline.load(path)
        if pipeline.meta["factory"] != "Flat":
            continue
        positions = pipeline.stored.docs.live_positions()
        rows = np.stack([pipeline.stored.index.reconstruct(int(p)) for p in positions])
        _, truth = exact_search(queries, rows, 10)
        found = pipeline.search_vectors(queries, 10)[1]
        out[name] = float(np.mean([len(set(f) & set(positions[t])) / 10 for f, t in zip(found, truth, strict=True)]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--encoder-dir", type=Path, default=Path("runs/scifact/minilm-int8"))
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--deletes", type=int, default=10)
    parser.add_argument("--kill-within", type=float, default=6.0, help="seconds after the PUT to kill at, at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--work", type=Path, default=Path("runs/updates-fault"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/updates"))
    args = parser.parse_args()

    rng = random.Random(args.seed)
    dataset = load_dataset(args.dataset)
    identity = json.loads((args.encoder_dir / "meta.json").read_text())["encoder"]
    encoder = load_encoder_from_identity(identity)
    args.work.mkdir(parents=True, exist_ok=True)
    dirs = {name: args.work / name for name in INDEXES}
    for name, factory in INDEXES.items():
        build_index_dir(dataset, encoder, spec_of(factory), dirs[name], show_progress=False)
    ops = make_workload(dataset.corpus, args.cycles * args.batch, args.cycles * args.deletes, args.batch, args.seed)
    cycles: list[tuple[Put, Delete | None]] = []
    for op in ops:
        if isinstance(op, Put):
            cycles.append((op, None))
        else:
            cycles[-1] = (cycles[-1][0], op)
    ledger = Ledger(dataset.corpus)
    base = f"http://127.0.0.1:{args.port}"
    rows: list[dict[str, Any]] = []
    totals: dict[str, int] = {}
    for number, cycle in enumerate([*cycles, None]):
        started = time.time()
        server = start_server(dirs, args.port, args.work / f"server-{number}.log")
        wait_ready(base, server)
        ready = time.time() - started
        sample = sorted(ledger.written | set(rng.sample(sorted(ledger.texts), 50)))
        counts = verify(base, ledger, sample)
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
        row: dict[str, Any] = {"cycle": number, "restart_to_ready_s": round(ready, 2), **counts}
        if cycle is None:
            server.send_signal(signal.SIGTERM)
            server.wait(120)
            rows.append(row)
            print(json.dumps(row), flush=True)
            break
        put, delete = cycle
        events: list[str] = []
        writer = threading.Thread(target=send, args=(base, put, delete, ledger, events))
        writer.start()
        kill_after = rng.uniform(0, args.kill_within)
        time.sleep(kill_after)
        server.send_signal(signal.SIGKILL)
        server.wait()
        writer.join()
        row.update({"killed_after_s": round(kill_after, 2), "writes": events})
        rows.append(row)
        print(json.dumps(row), flush=True)
    queries = encoder.encode(dataset.split_queries("train")[1][:200], kind="query", batch_size=64)
    summary = {
        "machine": machine_info(),
        "cycles": args.cycles,
        "batch": args.batch,
        "deletes_per_cycle": args.deletes,
        "totals": totals,
        "offline_flat_recall_vs_exact": offline_check(dirs, queries),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fault.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("machine", "rows")}, indent=2))


if __name__ == "__main__":
    main()
