"""How many pseudo-queries a corpus gives, and how their lengths match real queries, per kind and mix.

    python benchmarks/students/pseudo_stats.py --dataset scifact --count 200000 --out DIR

Writes DIR/pseudo_queries.json and prints a table: per mix, the count made, the share of each kind, mean words, and
the total variation distance between word-count histograms of the pseudo-queries and of the dataset's *train*
queries (when it has them; test queries are never read), plus a sample of each kind.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from search.data.datasets import load_dataset
from search.data.pseudo_queries import (
    PSEUDO_KINDS,
    PseudoQueryMix,
    document_pseudo_queries,
    length_distance,
    length_histogram,
    pseudo_queries,
)
from search.data.training_texts import train_query_texts, training_texts

MIXES = {
    "default": PseudoQueryMix(),
    **{f"{kind} only": PseudoQueryMix(**{k: float(k == kind) for k in PSEUDO_KINDS}) for kind in PSEUDO_KINDS},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--count", type=int, default=200_000, help="pseudo-queries asked of the default mix")
    parser.add_argument("--variant-count", type=int, default=20_000, help="asked of each single-kind mix")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    queries = train_query_texts(dataset)
    reference = length_histogram(queries) if queries else None
    corpus_texts = training_texts(dataset, seed=0)
    rows = []
    for name, mix in MIXES.items():
        count = args.count if name == "default" else args.variant_count
        started = time.perf_counter()
        texts = pseudo_queries(dataset, count, seed=0, mix=mix)
        seconds = time.perf_counter() - started
        words = [len(t.split()) for t in texts]
        rows.append({
            "mix": name,
            "weights": mix.weights(),
            "asked": count,
            "made": len(texts),
            "seconds": round(seconds, 1),
            "mean_words": round(sum(words) / max(1, len(words)), 2),
            "length_tv_vs_train_queries": None if reference is None else round(
                length_distance(length_histogram(texts), reference), 3),
        })  # fmt: skip
    rng = random.Random(0)
    samples = {kind: [] for kind in PSEUDO_KINDS}
    for doc in rng.sample(list(dataset.corpus), 12):
        for kind in PSEUDO_KINDS:
            samples[kind] += document_pseudo_queries(doc, kind, rng)[:1]
    summary = {
        "dataset": dataset.name,
        "documents": len(dataset.corpus),
        "train_queries": len(queries),
        "train_query_mean_words": round(sum(len(q.split()) for q in queries) / max(1, len(queries)), 2),
        "corpus_texts": len(corpus_texts),
        "corpus_text_length_tv_vs_train_queries": None if reference is None else round(
            length_distance(length_histogram(corpus_texts), reference), 3),
        "mixes": rows,
        "samples": samples,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pseudo_queries.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{dataset.name}: {len(dataset.corpus)} documents, {len(queries)} train queries "
          f"(mean {summary['train_query_mean_words']} words), {len(corpus_texts)} corpus texts "
          f"(length TV {summary['corpus_text_length_tv_vs_train_queries']})")  # fmt: skip
    print(f"{'mix':<16} {'asked':>8} {'made':>8} {'mean words':>10} {'length TV':>9} {'seconds':>8}")
    for row in rows:
        print(f"{row['mix']:<16} {row['asked']:>8} {row['made']:>8} {row['mean_words']:>10} "
              f"{row['length_tv_vs_train_queries']!s:>9} {row['seconds']:>8}")  # fmt: skip


if __name__ == "__main__":
    main()
