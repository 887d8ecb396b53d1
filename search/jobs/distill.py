"""Distillation on a dataset: training texts, the documents the `rank` losses rank against, then `distill`.

`compression.distill` works on plain texts and arrays; this module picks them from a dataset (corpus text and train
queries only, see `search.data.training_texts`) and supplies the cached corpus vectors the `rank` losses need, so
the CLI and the main job run the same code.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np

from compression.distill import DistillConfig, DistillReport, compute_teacher_targets, distill, parse_student
from compression.encoders import Encoder, load_encoder
from search.data.datasets import Dataset
from search.data.pseudo_queries import pseudo_queries as generate_pseudo_queries
from search.data.training_texts import (
    TRAIN_SPLIT,
    held_out_query_texts,
    normalise_text,
    train_query_texts,
    training_texts,
)
from search.embeddings import encode_corpus

logger = logging.getLogger(__name__)


def ranking_documents(
    dataset: Dataset, config: DistillConfig, teacher: Encoder, threads: int | None, show_progress: bool
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(teacher's corpus vectors, frozen student document tower or None) for a `rank` loss; (None, None) otherwise.

    With `projection="never"` the student keeps its own space, so its side of the ranking is the base student's own
    corpus vectors (a frozen document tower: the index is then built with the base student as document encoder);
    otherwise the student is projected into the teacher's space and ranks the teacher's documents (asymmetric mode).
    Both come from the corpus-embedding cache.
    """
    if "rank" not in config.loss:
        return None, None
    teacher_docs = encode_corpus(teacher, dataset.corpus, show_progress=show_progress).vectors
    if config.projection != "never":
        return teacher_docs, None
    kind, argument = parse_student(config.student)
    if kind == "teacher-layers":
        raise ValueError("a teacher-layers student shares the teacher's space: use projection='auto' with a rank loss")
    if kind == "minilm-layers":
        argument = "minilm"
    base = load_encoder(str(argument), threads=threads)
    return teacher_docs, encode_corpus(base, dataset.corpus, show_progress=show_progress).vectors


def train_query_positives(dataset: Dataset, texts: list[str]) -> list[list[int]]:
    """For each text, the corpus rows judged relevant (grade > 0) when the text is a *train* query, else []."""
    if TRAIN_SPLIT not in dataset.qrels:
        return [[] for _ in texts]
    row_of = {doc.id: row for row, doc in enumerate(dataset.corpus)}
    judged: dict[str, list[int]] = {}
    for qid, grades in dataset.qrels[TRAIN_SPLIT].items():
        if qid in dataset.queries:
            rows = [row_of[doc] for doc, grade in grades.items() if grade > 0 and doc in row_of]
            judged.setdefault(dataset.queries[qid].strip(), []).extend(rows)
    return [sorted(set(judged.get(text.strip(), []))) for text in texts]


def distill_on_dataset(
    dataset: Dataset,
    config: DistillConfig,
    out_dir: Path,
    max_texts: int | None = None,
    eval_texts: int = 256,
    seed: int = 0,
    teacher: Encoder | None = None,
    device: str = "cpu",
    threads: int | None = None,
    show_progress: bool = True,
    train_texts: list[str] | None = None,
    held_out: list[str] | None = None,
    pseudo_queries: frozenset[str] = frozenset(),
    pseudo_query_count: int = 0,
) -> DistillReport:
    """Distil on `dataset`'s training texts (the first `eval_texts` of the seeded shuffle are held out for the
    report's before/after figures), or on the given `train_texts` / `held_out` (chosen by the caller from
    `training_texts`); never on test queries. The texts of `pseudo_queries` and the train queries are the
    query-like ones a curriculum trains apart from corpus text. Without `train_texts`, `pseudo_query_count`
    pseudo-queries (`search.data.pseudo_queries`, none repeating a corpus text) join the dataset's training texts."""
    if (train_texts is None) != (held_out is None):
        raise ValueError("give both train_texts and held_out, or neither")
    if train_texts is None or held_out is None:
        wanted = None if max_texts is None else max_texts + eval_texts
        texts = training_texts(dataset, max_texts=wanted, seed=seed)
        held_out, train = texts[:eval_texts], texts[eval_texts:]
        if pseudo_query_count:
            extra = generate_pseudo_queries(dataset, pseudo_query_count, seed=seed, exclude=texts)
            pseudo_queries = pseudo_queries | frozenset(extra)
            train += extra
            random.Random(seed).shuffle(train)
    else:
        train = list(train_texts)
    teacher = teacher or load_encoder(config.teacher, threads=threads, device=device)
    targets = compute_teacher_targets(teacher, train, config.max_seq_length, config.batch_size,
                                      show_progress=show_progress, precision=config.precision,
                                      device=device)[0]  # fmt: skip
    if config.label_boost and "rank" in config.loss:
        # every train query carries hard labels: add the ones the seeded sample missed (targets cached separately)
        sampled = set(train)
        forbidden = held_out_query_texts(dataset)  # a train query worded like a test query stays out
        extra = [
            q
            for q in dict.fromkeys(train_query_texts(dataset))
            if q not in sampled and q not in held_out and normalise_text(q) not in forbidden
        ]
        if extra:
            extra_targets = compute_teacher_targets(teacher, extra, config.max_seq_length, config.batch_size,
                                                    show_progress=show_progress, precision=config.precision,
                                                    device=device)[0]  # fmt: skip
            train, targets = train + extra, np.concatenate([targets, extra_targets])
    teacher_docs, student_docs = ranking_documents(dataset, config, teacher, threads, show_progress)
    positives = train_query_positives(dataset, train) if config.label_boost and "rank" in config.loss else None
    if positives is not None:
        logger.info("%d training texts are train queries with judged documents", sum(1 for p in positives if p))
    queries = pseudo_queries | set(train_query_texts(dataset))
    return distill(
        train,
        out_dir,
        config,
        teacher=teacher,
        eval_texts=held_out,
        device=device,
        threads=threads,
        show_progress=show_progress,
        teacher_documents=teacher_docs,
        student_documents=student_docs,
        positives=positives,
        targets=targets,
        query_like=[text in queries for text in train],
    )
