"""Retrieval metrics as pure functions over ranked id lists and graded qrels (trec_eval conventions).

`Ranking` is {query_id: [doc_id, ...]} best first; `Qrels` is {query_id: {doc_id: grade}}.
nDCG uses linear gain (grade / log2(rank + 1)) as trec_eval and BEIR do; grade <= 0 is non-relevant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

Ranking = Mapping[str, Sequence[str]]
Qrels = Mapping[str, Mapping[str, int]]


def knn_recall(found: Sequence[Sequence[str]], reference: Sequence[Sequence[str]], k: int) -> float:
    """Mean overlap |found@k ∩ reference@k| / |reference@k|: recall@k against exact search or another pipeline."""
    if len(found) != len(reference):
        raise ValueError(f"found has {len(found)} queries but reference has {len(reference)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not reference:
        raise ValueError("no queries to compare")
    overlaps = []
    for got, want in zip(found, reference, strict=True):
        wanted = set(want[:k])
        overlaps.append(len(set(got[:k]) & wanted) / len(wanted) if wanted else 1.0)
    return float(np.mean(overlaps))


def _judged(qrels: Qrels) -> list[str]:
    if not qrels:
        raise ValueError("qrels are empty: nothing to evaluate")
    return list(qrels)


def ndcg_at_k(ranking: Ranking, qrels: Qrels, k: int = 10) -> float:
    """Mean nDCG@k over the judged queries (a query with no results scores 0)."""
    scores = []
    for qid in _judged(qrels):
        grades = qrels[qid]
        dcg = sum(grades.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranking.get(qid, ())[:k]))
        ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
        idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
        scores.append(dcg / idcg if idcg > 0 else 0.0)
    return float(np.mean(scores))


def recall_at_k(ranking: Ranking, qrels: Qrels, k: int = 100) -> float:
    """Mean fraction of each query's relevant documents found in its top-k."""
    scores = []
    for qid in _judged(qrels):
        relevant = {doc for doc, grade in qrels[qid].items() if grade > 0}
        if not relevant:
            continue
        scores.append(len(relevant.intersection(ranking.get(qid, ())[:k])) / len(relevant))
    return float(np.mean(scores)) if scores else 0.0


def mrr_at_k(ranking: Ranking, qrels: Qrels, k: int = 10) -> float:
    """Mean reciprocal rank of the first relevant document within the top-k (0 when none)."""
    scores = []
    for qid in _judged(qrels):
        relevant = {doc for doc, grade in qrels[qid].items() if grade > 0}
        first = next((rank for rank, doc in enumerate(ranking.get(qid, ())[:k], start=1) if doc in relevant), None)
        scores.append(1.0 / first if first else 0.0)
    return float(np.mean(scores))
