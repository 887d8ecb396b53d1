"""Project the resident memory of a served index directory to 10M and 100M vectors from the measured rows.

For each factory measured served at two sizes (scale.json, `--index-dirs`), resident bytes are modelled as
fixed + per_vector * N + coarse centroids(N), where the centroids (nlist x dim float32, nlist ~ 4 sqrt(N) as
`semsearch bench-scale` sizes them) are computed, not fitted, and fixed and per_vector come from the two measured
sizes. The document store and the vector file stay on disk (their sizes per vector are measured); the previous
format's documents, read whole into RAM, are projected from doc_memory.json.

    python benchmarks/scale/projection.py --out benchmarks/scale
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from indexes.faiss_index import default_nlist

SIZES = (1_000_000, 10_000_000, 100_000_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/scale"))
    args = parser.parse_args()
    result = json.loads((args.out / "scale.json").read_text())
    dim = result["vectors"]["dim"]
    docs = {row["store"]: row for row in json.loads((args.out / "doc_memory.json").read_text())}
    by_index: dict[str, dict[int, dict]] = {}
    for row in result["rows"]:
        if row.get("served"):
            by_index.setdefault(row["index"], {})[row["n"]] = row["served"]
    rows = []
    for template, served in by_index.items():
        if len(served) < 2:
            continue
        (n1, s1), (n2, s2) = sorted(served.items())[:2]
        ivf = "IVF" in template

        def centroids(n: int, ivf: bool = ivf) -> float:
            return default_nlist(n) * dim * 4 if ivf else 0.0

        per_vector = ((s2["resident_bytes"] - centroids(n2)) - (s1["resident_bytes"] - centroids(n1))) / (n2 - n1)
        fixed = s1["resident_bytes"] - centroids(n1) - per_vector * n1
        disk = (s2["on_disk_bytes"].get("vectors.npy", 0) + s2["on_disk_bytes"].get("docs.sqlite", 0)) / n2
        for n in SIZES:
            resident = fixed + per_vector * n + centroids(n)
            rows.append({"index": template, "n": n, "resident_gb": resident / 1e9, "resident_bytes_per_vector":
                         resident / n, "on_disk_gb_vectors_and_docs": disk * n / 1e9, "fitted_from": [n1, n2],
                         "per_vector_bytes": per_vector, "fixed_mb": fixed / 1e6})  # fmt: skip
    legacy = docs.get("format 1 (ids.json + docs.jsonl)")
    lines = [
        "| index (served) | N | resident GB | resident B/vector | on disk GB (vector file + doc store) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['index']} | {r['n']:,} | {r['resident_gb']:.2f} | {r['resident_bytes_per_vector']:.1f} | "
              f"{r['on_disk_gb_vectors_and_docs']:.0f} |" for r in rows]  # fmt: skip
    if legacy:
        per_doc = legacy["resident_bytes_per_doc"]
        lines += ["", f"The previous format's ids and display fields alone, read whole into RAM: {per_doc:.0f} B per "
                  f"document measured at {legacy['n']:,}, so {per_doc * 1e8 / 1e9:.0f} GB at 100M documents, against "
                  f"{docs['SQLite document store']['resident_bytes_per_doc']:.1f} B per document for the SQLite "
                  "store (its page cache, bounded)."]  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / "projection.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "projection.md").write_text(text)


if __name__ == "__main__":
    main()
