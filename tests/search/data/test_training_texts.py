"""Training texts for distillation: corpus text and train queries, never a held-out (test) query."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.data.datasets import Dataset, Document, load_beir
from search.data.training_texts import check_no_test_queries, split_sentences, training_texts


def test_training_texts_use_train_queries_and_never_test_queries(beir_dir: Path) -> None:
    dataset = load_beir(beir_dir)
    texts = training_texts(dataset, max_texts=None, seed=0)
    _, train_queries, _ = dataset.split_queries("train")
    _, test_queries, _ = dataset.split_queries("test")
    assert set(train_queries) <= set(texts)
    assert not set(test_queries) & set(texts)
    assert len(texts) == len(set(texts))
    assert any(text.startswith(("d ", "vitamin", "tumor")) or "note" in text for text in texts)  # corpus sentences
    assert training_texts(dataset, max_texts=None, seed=0) == texts
    assert training_texts(dataset, max_texts=None, seed=1) != texts
    assert len(training_texts(dataset, max_texts=7, seed=0)) == 7
    with pytest.raises(ValueError, match="held-out"):
        check_no_test_queries([*texts, test_queries[0]], dataset)


def test_corpus_text_identical_to_a_test_query_is_dropped() -> None:
    claim = "Vitamin D supplements increase bone density in older adults."
    other = "A second sentence that is long enough to be kept as a training text."
    dataset = Dataset(
        name="leaky",
        corpus=(Document("d1", "", f"{claim} {other}"),),
        queries={"q1": claim.lower().rstrip("."), "q2": "a train query about vaccines"},
        qrels={"test": {"q1": {"d1": 1}}, "train": {"q2": {"d1": 1}}},
    )
    texts = training_texts(dataset)
    assert claim not in texts
    assert other in texts
    assert "a train query about vaccines" in texts
    assert f"{claim} {other}" in texts  # a window holding the claim is corpus text, not the query itself


def test_split_sentences_keeps_abbreviations_and_decimals() -> None:
    text = "Levels rose to 1.8 vs. 2.0 in Fig. 2 (e.g. in mice). Results were clear! Did it work? Yes."
    assert split_sentences(text) == [
        "Levels rose to 1.8 vs. 2.0 in Fig. 2 (e.g. in mice).",
        "Results were clear!",
        "Did it work?",
        "Yes.",
    ]
