"""Memory per document of an index directory's document side at N documents: the previous format (ids.json and
docs.jsonl, read whole into Python objects by the loader this project used until the SQLite store) against the SQLite
document store (`indexes.docstore`), each opened in a fresh process.

Documents are SciFact's real titles and first 300 characters (what an index directory stores as the snippet), cycled
to N with unique ids. Memory is the growth of the process's anonymous and file-backed RSS (/proc/self/status) from
after the imports to after opening the store and reading the documents of 1,000 random searches of 10 hits.

    python benchmarks/scale/doc_memory.py --dataset ../shared/datasets/scifact --n 1000000 --out benchmarks/scale
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNIPPET_CHARS = 300  # as search.pipeline.SNIPPET_CHARS

CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from indexes.docstore import DisplayDoc, DocStore
from indexes.ids import DocIdMap
from search.bench.scale.probe import status_bytes
from semsearch_common.machine import release_freed_memory

folder, kind, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
lookups = np.random.default_rng(0).integers(0, n, (1000, 10)).tolist()
release_freed_memory()
before = status_bytes()
started = time.perf_counter()
if kind == "format 1 (ids.json + docs.jsonl)":  # the loader of the previous format, as it was
    ids = DocIdMap(json.loads((folder / "ids.json").read_text(encoding="utf-8")))
    text = (folder / "docs.jsonl").read_text(encoding="utf-8").removesuffix("\n")
    docs = tuple(DisplayDoc(r["title"], r["snippet"]) for r in map(json.loads, text.split("\n")))
    del text
    opened = time.perf_counter() - started
    started = time.perf_counter()
    for row in lookups:
        hits = [(ids.ids[p], docs[p].title, docs[p].snippet) for p in row]
else:
    store = DocStore.open(folder / "docs.sqlite")
    opened = time.perf_counter() - started
    started = time.perf_counter()
    for row in lookups:
        found = store.records(row)
        hits = [(found[p].id, found[p].title, found[p].snippet) for p in row]
lookup_us = (time.perf_counter() - started) / len(lookups) * 1e6
release_freed_memory()
after = status_bytes()
print(json.dumps({"anon": after["anon"] - before["anon"], "file": after["file"] - before["file"],
                  "open_s": opened, "lookup_us_per_search": lookup_us}))
"""


def real_docs(dataset: Path) -> list[tuple[str, str]]:
    """(title, snippet) of every document in a BEIR corpus.jsonl."""
    docs = []
    with (dataset / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            docs.append((record.get("title", ""), record.get("text", "")[:SNIPPET_CHARS]))
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/scale"))
    args = parser.parse_args()
    from indexes.docstore import DisplayDoc, write_doc_store

    source = real_docs(args.dataset)
    ids = [f"doc-{i:09d}" for i in range(args.n)]
    docs = [DisplayDoc(*source[i % len(source)]) for i in range(args.n)]
    rows = []
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        (folder / "ids.json").write_text(json.dumps(ids), encoding="utf-8")
        lines = (json.dumps({"id": i, "title": d.title, "snippet": d.snippet}) for i, d in zip(ids, docs, strict=True))
        (folder / "docs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        legacy_write = time.perf_counter() - started
        started = time.perf_counter()
        write_doc_store(folder / "docs.sqlite", ids, docs)
        sqlite_write = time.perf_counter() - started
        sizes = {
            "format 1 (ids.json + docs.jsonl)": (folder / "ids.json").stat().st_size
            + (folder / "docs.jsonl").stat().st_size,
            "SQLite document store": (folder / "docs.sqlite").stat().st_size,
        }
        writes = {"format 1 (ids.json + docs.jsonl)": legacy_write, "SQLite document store": sqlite_write}
        for kind in sizes:
            done = subprocess.run([sys.executable, "-c", CHILD, str(folder), kind, str(args.n)], capture_output=True,
                                  text=True, check=True)  # fmt: skip
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"store": kind, "n": args.n, "on_disk_bytes": sizes[kind], "write_s": writes[kind], **measured,
                         "resident_bytes_per_doc": (measured["anon"] + max(measured["file"], 0)) / args.n})  # fmt: skip
    header = "| store | N | on disk B/doc | resident B/doc (anon + file growth) | open s | 10 hits' docs us | write s |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['store']} | {row['n']:,} | {row['on_disk_bytes'] / row['n']:.0f} | "
                     f"{row['resident_bytes_per_doc']:.1f} | {row['open_s']:.2f} | {row['lookup_us_per_search']:.0f} | "
                     f"{row['write_s']:.1f} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / "doc_memory.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    (args.out / "doc_memory.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
