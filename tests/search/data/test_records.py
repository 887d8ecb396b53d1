import pytest

from search.data.beir import load_beir
from search.data.records import Dataset, DatasetError, Document, corpus_fingerprint


def test_document_full_text_joins_title_and_text():
    assert Document("1", "A title", "The body.").full_text() == "A title The body."
    assert Document("2", "", "Body only").full_text() == "Body only"


def test_split_queries_orders_numeric_ids_numerically_then_the_others():
    corpus = (Document("d", "", "text"),)
    queries = {"10": "ten", "2": "two", "b": "bee", "a": "ay"}
    judged = {"b": {"d": 1}, "10": {"d": 1}, "a": {"d": 2}, "2": {"d": 1}}
    ids, texts, qrels = Dataset("x", corpus, queries, {"test": judged}).split_queries("test")
    assert ids == ["2", "10", "a", "b"]
    assert texts == ["two", "ten", "ay", "bee"]
    assert qrels == judged


def test_split_queries_errors_name_the_split_and_the_missing_queries():
    corpus = (Document("d", "", "text"),)
    dataset = Dataset("x", corpus, {"q1": "one"}, {"test": {"q1": {"d": 1}, "q9": {"d": 1}}, "train": {}})
    with pytest.raises(DatasetError, match="no qrels for split 'dev'; available: test, train"):
        dataset.split_queries("dev")
    with pytest.raises(DatasetError, match=r"qrels/test.tsv names queries missing from queries.jsonl: \['q9'\]"):
        dataset.split_queries("test")


def test_corpus_fingerprint_follows_content_order_and_field_boundaries(beir_dir):
    corpus = load_beir(beir_dir).corpus
    assert corpus_fingerprint(corpus) == corpus_fingerprint(load_beir(beir_dir).corpus)  # two separate reads
    assert len(corpus_fingerprint(corpus)) == 64
    first = corpus[0]
    variants = [
        (Document(first.id, first.title, first.text + "!"),) + corpus[1:],
        (Document(first.id, first.title + "!", first.text),) + corpus[1:],
        (corpus[1], corpus[0]) + corpus[2:],
        corpus[:-1],
    ]
    fingerprints = {corpus_fingerprint(corpus)} | {corpus_fingerprint(v) for v in variants}
    assert len(fingerprints) == 1 + len(variants)
    # the separators keep "ab"+"c" apart from "a"+"bc"
    assert corpus_fingerprint([Document("ab", "c", "t")]) != corpus_fingerprint([Document("a", "bc", "t")])
