"""The int8 quality gate: does quantization cost more nDCG@10 than we allow? Measured on TRAIN queries only.

To stay cheap on CPU, it searches a subset of the corpus: every document judged for the split's queries
plus seeded distractors, encoded by both models (symmetric, exact search), so only the encoders differ.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from compression.encoders import Encoder
from indexes.exact import exact_search
from search.data.datasets import Dataset, Document
from search.evaluation.metrics import Qrels, ndcg_at_k

logger = logging.getLogger(__name__)

FORBIDDEN_SPLITS = ("test",)


@dataclass(frozen=True)
class GateResult:
    """nDCG@10 of the reference (fp32) and the candidate (int8) on the same queries and documents."""

    split: str
    queries: int
    documents: int
    ndcg_reference: float
    ndcg_candidate: float
    tolerance: float

    @property
    def drop(self) -> float:
        return self.ndcg_reference - self.ndcg_candidate

    @property
    def passed(self) -> bool:
        return self.drop <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ndcg_drop": self.drop, "passed": self.passed}


def gate_subset(dataset: Dataset, split: str, distractors: int, seed: int) -> tuple[Document, ...]:
    """Judged documents of `split` plus `distractors` seeded others, in corpus order."""
    judged = {doc for per_query in dataset.qrels[split].values() for doc in per_query}
    others = [i for i, doc in enumerate(dataset.corpus) if doc.id not in judged]
    rng = np.random.default_rng(seed)
    picked = set(rng.choice(others, size=min(distractors, len(others)), replace=False).tolist()) if others else set()
    return tuple(doc for i, doc in enumerate(dataset.corpus) if doc.id in judged or i in picked)


def subset_ndcg(encoder: Encoder, docs: tuple[Document, ...], texts: list[str], qrels: Qrels, qids: list[str]) -> float:
    """nDCG@10 of `encoder` alone (queries and documents, exact search) on the documents `docs`."""
    doc_vectors = encoder.encode([doc.full_text() for doc in docs], kind="passage")
    _, positions = exact_search(encoder.encode(texts, kind="query"), doc_vectors, 10)
    ranking = {qid: [docs[p].id for p in row] for qid, row in zip(qids, positions, strict=True)}
    return ndcg_at_k(ranking, qrels, 10)


def quality_gate(
    reference: Encoder,
    candidate: Encoder,
    dataset: Dataset,
    split: str = "train",
    tolerance: float = 0.005,
    distractors: int = 2000,
    seed: int = 0,
) -> GateResult:
    """nDCG@10 of `candidate` (int8) against `reference` (fp32) on `split`; never on the test queries."""
    if split in FORBIDDEN_SPLITS:
        raise ValueError(f"the quantization gate never looks at {split!r} queries; use a training split such as train")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    qids, texts, qrels = dataset.split_queries(split)
    docs = gate_subset(dataset, split, distractors, seed)
    logger.info("quality gate: %d %s queries over %d documents", len(qids), split, len(docs))
    return GateResult(
        split=split,
        queries=len(qids),
        documents=len(docs),
        ndcg_reference=subset_ndcg(reference, docs, texts, qrels, qids),
        ndcg_candidate=subset_ndcg(candidate, docs, texts, qrels, qids),
        tolerance=tolerance,
    )
