"""Pseudo-queries: deterministic for a seed, in the asked mix, distinct, and never a held-out (test) query."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from search.data.datasets import Dataset, Document, load_beir
from search.data.pseudo_queries import (
    PSEUDO_KINDS,
    SPAN_WORDS,
    STOP_WORDS,
    PseudoQueryMix,
    document_pseudo_queries,
    first_clause,
    keyword_runs,
    length_distance,
    length_histogram,
    pseudo_queries,
    quotas,
    to_question,
)
from search.data.training_texts import normalise_text

ABSTRACT = (
    "Alterations of the architecture of cerebral white matter can affect cortical development, which results in "
    "functional disabilities. A line scan diffusion-weighted magnetic resonance imaging sequence was applied to "
    "measure the apparent diffusion coefficient in newborn infants. Relative anisotropy increased with age; the "
    "increase was larger in central white matter."
)


def corpus(n: int = 30) -> tuple[Document, ...]:
    topics = ["vitamin D", "tumour growth", "insulin resistance", "gut microbiota", "sleep deprivation"]
    return tuple(
        Document(
            f"d{i}",
            f"Effects of {topics[i % 5]} on outcome {i}",
            f"{ABSTRACT} We studied {topics[i % 5]} in cohort {i} of patients. The {topics[i % 5]} levels "
            f"predicted mortality in group {i}, whereas controls showed no change.",
        )  # fmt: skip
        for i in range(n)
    )


def test_same_seed_same_texts_other_seed_other_texts(beir_dir: Path) -> None:
    dataset = load_beir(beir_dir)
    first = pseudo_queries(dataset, 60, seed=3)
    assert first == pseudo_queries(dataset, 60, seed=3)
    assert first != pseudo_queries(dataset, 60, seed=4)
    assert len(first) == 60
    assert len({normalise_text(t) for t in first}) == 60


def test_never_a_test_query_even_when_the_corpus_contains_it() -> None:
    test_query = "cerebral white matter"  # a keyword run and a span of every document
    dataset = Dataset(
        name="leaky",
        corpus=corpus(),
        queries={"q1": "Cerebral white matter.", "q2": "a train query"},
        qrels={"test": {"q1": {"d1": 1}}, "train": {"q2": {"d2": 1}}},
    )
    without = Dataset(name="open", corpus=dataset.corpus, queries={}, qrels={})
    assert test_query in {normalise_text(t) for t in pseudo_queries(without, 2000, seed=0)}  # it would be emitted
    texts = pseudo_queries(dataset, 2000, seed=0)
    assert test_query not in {normalise_text(t) for t in texts}
    assert len(texts) > 500


def test_excluded_texts_are_not_repeated() -> None:
    dataset = Dataset(name="c", corpus=corpus(), queries={}, qrels={})
    everything = pseudo_queries(dataset, 300, seed=0)
    exclude = everything[:50]
    again = pseudo_queries(dataset, 300, seed=0, exclude=exclude)
    assert not {normalise_text(t) for t in exclude} & {normalise_text(t) for t in again}


def test_mix_is_followed_and_spans_fill_what_a_kind_cannot_give() -> None:
    dataset = Dataset(name="c", corpus=corpus(40), queries={}, qrels={})
    texts = pseudo_queries(dataset, 200, seed=0, mix=PseudoQueryMix(span=0, clause=0, keywords=1, title=0, question=0))
    runs = {run for doc in dataset.corpus for run in document_pseudo_queries(doc, "keywords", random.Random(0))}
    assert len(texts) == 200
    assert sum(text in runs for text in texts) == min(200, len(runs))  # every run there is, spans for the rest
    titles_only = PseudoQueryMix(span=0, clause=0, keywords=0, title=1, question=0)
    texts = pseudo_queries(dataset, 100, seed=0, mix=titles_only)  # 40 titles, the other 60 are spans
    titles = {doc.title for doc in dataset.corpus}
    assert len(texts) == 100
    assert sum(text in titles for text in texts) == 40
    for kind in PSEUDO_KINDS:  # a single-kind mix gives exactly what was asked
        assert (
            len(pseudo_queries(dataset, 150, seed=1, mix=PseudoQueryMix(**{k: float(k == kind) for k in PSEUDO_KINDS})))
            == 150
        )


def test_kinds_have_query_shapes() -> None:
    rng = random.Random(0)
    doc = corpus(1)[0]
    for span in document_pseudo_queries(doc, "span", rng):
        words = span.split()
        assert SPAN_WORDS[0] <= len(words) <= SPAN_WORDS[1]
        assert words[0].lower() not in STOP_WORDS
        assert words[-1].lower() not in STOP_WORDS
    assert (
        first_clause(ABSTRACT)
        == "Alterations of the architecture of cerebral white matter can affect cortical development"
    )
    runs = keyword_runs(ABSTRACT.split(". ")[1])  # a 7-word run keeps its last 6 words (the head noun is last)
    assert runs == ["scan diffusion-weighted magnetic resonance imaging sequence", "apparent diffusion coefficient",
                    "newborn infants"]  # fmt: skip
    question = to_question("Alterations of white matter can affect cortical development", [], rng)
    assert question == "can alterations of white matter affect cortical development?"
    assert to_question("IL-6 is raised in sepsis", [], rng) == "is IL-6 raised in sepsis?"
    assert to_question("", ["gut microbiota"], rng).count("gut microbiota") == 1
    assert to_question("", [], rng) is None
    assert document_pseudo_queries(doc, "title", rng) == [doc.title]
    with pytest.raises(ValueError, match="span, clause"):
        document_pseudo_queries(doc, "paraphrase", rng)


def test_quotas_sum_to_count_and_follow_weights() -> None:
    shares = quotas(1001, PseudoQueryMix(span=2, clause=1, keywords=1, title=0, question=0))
    assert sum(shares.values()) == 1001
    assert shares["title"] == shares["question"] == 0
    assert shares["span"] in (500, 501)
    assert abs(shares["clause"] - 250) <= 1


def test_mix_parsing_and_validation() -> None:
    mix = PseudoQueryMix.parse("span=0.5, keywords=0.5")
    assert mix.weights() == {"span": 0.5, "clause": 0.0, "keywords": 0.5, "title": 0.0, "question": 0.0}
    with pytest.raises(ValueError, match=", ".join(PSEUDO_KINDS)):
        PseudoQueryMix.parse("crops=1")
    with pytest.raises(ValueError, match="KIND=NUMBER"):
        PseudoQueryMix.parse("span=lots")
    with pytest.raises(ValueError, match="positive sum"):
        PseudoQueryMix(span=0, clause=0, keywords=0, title=0, question=0)
    with pytest.raises(ValueError, match=">= 0"):
        pseudo_queries(Dataset(name="c", corpus=corpus(2), queries={}, qrels={}), -1)


def test_length_distance_is_a_total_variation() -> None:
    a = length_histogram(["one two", "one two three", "x y"])
    assert a == pytest.approx({2: 2 / 3, 3: 1 / 3})
    assert length_distance(a, a) == 0.0
    assert length_distance(length_histogram(["a b"]), length_histogram(["a b c"])) == 1.0
    assert length_distance(a, length_histogram(["a b"])) == pytest.approx(1 / 3)


def test_section_labels_of_structured_abstracts_are_dropped() -> None:
    from search.data.pseudo_queries import corpus_sentences

    text = "BACKGROUND Interferon-gamma levels vary. MAIN OUTCOME MEASURES: CRISPR Cas9 edits were counted."
    assert corpus_sentences(text) == ["Interferon-gamma levels vary.", "CRISPR Cas9 edits were counted."]
