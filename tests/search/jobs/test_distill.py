"""Distillation on a dataset: the train-query labels the `rank` losses boost."""

from __future__ import annotations

from pathlib import Path

from search.data.datasets import load_beir
from search.jobs.distill import train_query_positives


def test_train_query_positives_map_train_queries_to_their_judged_documents(beir_dir: Path) -> None:
    dataset = load_beir(beir_dir)
    rows = {doc.id: row for row, doc in enumerate(dataset.corpus)}
    train_query = dataset.queries["t0"]  # judged in train: vitamin-2
    test_query = dataset.queries["q0"]  # judged in test only
    positives = train_query_positives(dataset, [train_query, test_query, "some corpus sentence"])
    assert positives == [[rows["vitamin-2"]], [], []]
