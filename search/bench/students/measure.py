"""One student candidate measured against the teacher: its queries searched exactly over the teacher's document
vectors (asymmetric) or its own (symmetric), scored against qrels and the teacher's exact top-10, plus its agreement
with the teacher on held-out text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from compression.encoders import Encoder, load_encoder
from compression.static import STATIC_CONFIG_FILE, StaticEncoder
from search.data.datasets import Dataset
from search.embeddings import encode_corpus
from search.evaluation.agreement import agreement, top_k_rows
from search.evaluation.evaluate import RETRIEVE_K
from search.evaluation.metrics import knn_recall, ndcg_at_k, recall_at_k
from semsearch_common.timing import percentile_ms

DocSide = Literal["teacher", "own"]
DOC_SIDES: tuple[DocSide, ...] = ("teacher", "own")
PRECISIONS = ("auto", "fp32", "int8", "fp16")
RECALL_K = 10
SIDE_SUFFIXES: dict[str, DocSide] = {"asym": "teacher", "sym": "own"}


@dataclass(frozen=True)
class Candidate:
    """A query encoder to bench. `query` is an encoder spec (`teacher`, `minilm`, `fake:DIM`, a model, ONNX or
    static folder); `docs` is `teacher` (asymmetric: search the teacher's cached corpus vectors) or `own`
    (symmetric: the candidate encodes the corpus too); `precision` `auto` reads it from the encoder."""

    name: str
    family: str
    precision: str
    query: str
    docs: DocSide = "teacher"

    def __post_init__(self) -> None:
        if not self.name or not self.family or not self.query:
            raise ValueError(f"a candidate needs a name, a family and a query encoder spec, got {self}")
        if self.docs not in DOC_SIDES:
            raise ValueError(f"unknown document side {self.docs!r}: use one of {', '.join(DOC_SIDES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")


def load_candidate_encoder(spec: str, threads: int | None = None) -> Encoder:
    """`load_encoder`'s specs, plus a static encoder's folder (`compression.static`), which it does not read."""
    if (Path(spec).expanduser() / STATIC_CONFIG_FILE).exists():
        return StaticEncoder(Path(spec).expanduser())
    return load_encoder(spec, threads=threads)


def parse_candidate(text: str, family: str | None = None) -> Candidate:
    """`NAME=SPEC[:asym|:sym]` as a Candidate: `asym` (the default) searches the teacher's documents, `sym` its own;
    the family defaults to `static` for a static folder, else `student`; precision is read from the encoder."""
    name, sep, spec = text.partition("=")
    if not sep or not name.strip() or not spec.strip():
        raise ValueError(f"bad student {text!r}: use NAME=PATH, NAME=PATH:asym or NAME=PATH:sym")
    base, _, side = spec.rpartition(":")
    docs: DocSide = "teacher"
    if side in SIDE_SUFFIXES and base:
        spec, docs = base, SIDE_SUFFIXES[side]
    static = (Path(spec).expanduser() / STATIC_CONFIG_FILE).exists()
    return Candidate(name.strip(), family or ("static" if static else "student"), "auto", spec, docs)


@dataclass(frozen=True)
class BenchContext:
    """What every candidate is measured against: the split's queries and qrels, the teacher's document vectors,
    its vectors of the queries (encoded one at a time) and their exact top-10, and the held-out texts."""

    dataset: Dataset
    split: str
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]
    teacher: Encoder
    teacher_queries: np.ndarray
    teacher_docs: np.ndarray
    teacher_top_ids: list[list[str]]
    heldout_texts: list[str]
    teacher_heldout: np.ndarray | None


def corpus_ids(dataset: Dataset, positions: np.ndarray) -> list[list[str]]:
    """Document ids of corpus positions, row by row."""
    return [[dataset.corpus[p].id for p in row] for row in positions]


def check_fits_teacher(candidate: Candidate, encoder: Encoder, teacher: Encoder) -> None:
    """Raise ValueError unless an asymmetric candidate's queries have the teacher's dimension."""
    if candidate.docs == "teacher" and encoder.dim != teacher.dim:
        raise ValueError(f"{candidate.name}: {encoder.dim}-d queries cannot search the teacher's {teacher.dim}-d "
                         "documents; mark a model outside the teacher's space symmetric (:sym)")  # fmt: skip


def encode_one_at_a_time(encoder: Encoder, texts: Sequence[str]) -> np.ndarray:
    """Each text encoded alone (batch 1), as a served query is: int8 dynamic quantization scales by the batch."""
    return np.concatenate([encoder.encode([text], kind="query", batch_size=1) for text in texts])


def prepare_context(
    dataset: Dataset, split: str, teacher: Encoder, heldout_texts: Sequence[str], show_progress: bool = True
) -> BenchContext:
    """The teacher's side of every comparison, computed once (its corpus vectors from `search.embeddings`' cache)."""
    query_ids, query_texts, qrels = dataset.split_queries(split)
    teacher_docs = encode_corpus(teacher, dataset.corpus, show_progress=show_progress).vectors
    teacher_queries = encode_one_at_a_time(teacher, query_texts)
    teacher_top_ids = corpus_ids(dataset, top_k_rows(teacher_queries, teacher_docs, RECALL_K))
    heldout = list(heldout_texts)
    teacher_heldout = teacher.encode(heldout, kind="query") if heldout else None
    return BenchContext(dataset, split, query_ids, query_texts, qrels, teacher, teacher_queries, teacher_docs,
                        teacher_top_ids, heldout, teacher_heldout)  # fmt: skip


def measure_candidate(
    candidate: Candidate, encoder: Encoder, context: BenchContext, encode_seconds: np.ndarray,
    show_progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """One row: recall@10 vs the teacher's exact top-10, nDCG@10 and recall@100 against the split's qrels (exact
    search), the encode p50/p95 of `encode_seconds` (single-query calls, timed by the caller), model bytes, and for
    a teacher-space encoder the held-out mean cosine and recall@10 vs teacher over the teacher's documents."""
    teacher = context.teacher
    queries = context.teacher_queries if encoder is teacher else encode_one_at_a_time(encoder, context.query_texts)
    if candidate.docs == "teacher" or encoder is teacher:
        docs = context.teacher_docs
    else:
        docs = encode_corpus(encoder, context.dataset.corpus, show_progress=show_progress).vectors
    check_fits_teacher(candidate, encoder, teacher)
    found = corpus_ids(context.dataset, top_k_rows(queries, docs, RETRIEVE_K))
    ranking = dict(zip(context.query_ids, found, strict=True))
    heldout: dict[str, float | None] = {"heldout_cosine": None, "heldout_recall@10_vs_teacher": None}
    if context.teacher_heldout is not None and encoder.dim == teacher.dim:
        vectors = context.teacher_heldout if encoder is teacher else encoder.encode(context.heldout_texts, "query")
        agreed = agreement(vectors, context.teacher_heldout, context.teacher_docs, RECALL_K)
        heldout = {"heldout_cosine": agreed.cosine, "heldout_recall@10_vs_teacher": agreed.recall_vs_teacher}
    precision = candidate.precision
    if precision == "auto":
        precision = str(encoder.identity().get("precision") or "fp32")
    return {
        "name": candidate.name,
        "family": candidate.family,
        "precision": precision,
        "docs": candidate.docs,
        "query_spec": candidate.query,
        "encoder": encoder.name,
        "dim": encoder.dim,
        "recall@10_vs_teacher": knn_recall(found, context.teacher_top_ids, RECALL_K),
        "ndcg@10": ndcg_at_k(ranking, context.qrels, 10),
        "recall@100": recall_at_k(ranking, context.qrels, 100),
        "encode_ms_p50": percentile_ms(encode_seconds, 50),
        "encode_ms_p95": percentile_ms(encode_seconds, 95),
        "model_bytes": encoder.model_bytes(),
        **heldout,
    }
