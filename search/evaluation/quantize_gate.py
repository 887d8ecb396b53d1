"""The int8 quality gates: does quantization cost more than we allow?

`quality_gate` (labelled): nDCG@10 of fp32 and int8 on TRAIN queries only, over a subset of the corpus (every
document judged for the split's queries plus seeded distractors, encoded by both models, exact search), so only the
encoders differ. `agreement_gate` (label-free, for query encoders in the teacher's space): recall@10 vs the teacher of
fp32 and int8 on held-out query-like texts, so it works on a corpus without any qrels.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from compression.encoders import Encoder, l2_normalise
from indexes.exact import exact_search
from search.data.datasets import Dataset, Document
from search.evaluation.agreement import agreement, top_k_rows
from search.evaluation.metrics import Qrels, ndcg_at_k

logger = logging.getLogger(__name__)

FORBIDDEN_SPLITS = ("test",)
AGREEMENT_TOLERANCE = 0.02
"""The largest recall@10-vs-teacher loss of an int8 query encoder against its fp32 original that `agreement_gate`
lets pass."""


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


@dataclass(frozen=True)
class AgreementGate:
    """An int8 query encoder against its fp32 original, both searched over the teacher's documents, on held-out
    query-like texts (no labels needed): recall@10 vs the teacher of each, and the int8 vectors' mean cosine to the
    fp32 ones. It passes when int8 loses at most `tolerance` recall."""

    texts: int
    fp32_recall: float
    int8_recall: float
    cosine_to_fp32: float
    tolerance: float

    @property
    def drop(self) -> float:
        return self.fp32_recall - self.int8_recall

    @property
    def passed(self) -> bool:
        return self.drop <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "recall_drop": self.drop, "passed": self.passed}


def agreement_gate(
    fp32_vectors: np.ndarray,
    int8_vectors: np.ndarray,
    teacher_vectors: np.ndarray,
    teacher_documents: np.ndarray,
    tolerance: float = AGREEMENT_TOLERANCE,
    teacher_top: np.ndarray | None = None,
) -> AgreementGate:
    """The int8 gate of a query encoder in the teacher's space: the vectors of the same held-out texts from the fp32
    and the int8 model, judged by their agreement with the teacher (`teacher_top`: the teacher's top-10 rows, reused
    across encoders when given)."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if fp32_vectors.shape != int8_vectors.shape:
        raise ValueError(f"fp32 vectors {fp32_vectors.shape} and int8 vectors {int8_vectors.shape} differ")
    top = top_k_rows(teacher_vectors, teacher_documents, 10) if teacher_top is None else teacher_top
    fp32 = agreement(fp32_vectors, teacher_vectors, teacher_documents, 10, top)
    int8 = agreement(int8_vectors, teacher_vectors, teacher_documents, 10, top)
    cosine = float(np.mean(np.sum(l2_normalise(fp32_vectors) * l2_normalise(int8_vectors), axis=1)))
    return AgreementGate(len(fp32_vectors), fp32.recall_vs_teacher, int8.recall_vs_teacher, cosine, tolerance)
