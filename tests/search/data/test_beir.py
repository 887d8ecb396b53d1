import json
import logging

import pytest

from search.data.beir import load_beir, load_qrels, load_queries
from search.data.records import DatasetError


def test_load_beir_with_graded_qrels(beir_dir):
    ds = load_beir(beir_dir)
    assert ds.name == "tiny"
    assert ds.path == beir_dir
    assert len(ds.corpus) == 60
    assert len(ds.queries) == 10
    assert ds.corpus[0].id == "vitamin-0"
    assert ds.corpus[0].title == "vitamin study 0"
    assert set(ds.qrels) == {"test", "train"}
    assert ds.qrels["test"]["q0"] == {"vitamin-0": 2, "vitamin-1": 1}
    ids, texts, _ = ds.split_queries("test")
    assert ids == ["q0", "q1", "q2", "q3", "q4"]
    assert texts[0] == "vitaminkey"
    assert load_beir(beir_dir, name="other").name == "other"


def test_queries_and_qrels_are_optional(beir_dir):
    (beir_dir / "queries.jsonl").unlink()
    for split in ("test", "train"):
        (beir_dir / "qrels" / f"{split}.tsv").unlink()
    ds = load_beir(beir_dir)
    assert len(ds.corpus) == 60
    assert ds.queries == {}
    assert ds.qrels == {}


def test_missing_corpus_names_the_layout(tmp_path):
    with pytest.raises(DatasetError, match="no corpus.jsonl .BEIR layout: corpus.jsonl, queries.jsonl"):
        load_beir(tmp_path)


def test_malformed_corpus_line_is_reported_with_file_and_line(beir_dir):
    corpus = beir_dir / "corpus.jsonl"
    lines = corpus.read_text().splitlines()
    lines[3] = '{"_id": "broken", "text": '
    corpus.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"{corpus}:4: malformed JSON"):
        load_beir(beir_dir)


def test_qrels_without_header_blank_lines_and_errors(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("q1\td1\t2\n\nq1\td2\t0\nq2\td1\t1\n")
    assert load_qrels(path) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d1": 1}}
    path.write_text("query-id\tcorpus-id\tscore\nq0\tvitamin-0\tvery\n")
    with pytest.raises(DatasetError, match=r"test.tsv:2: relevance 'very' is not an integer"):
        load_qrels(path)
    path.write_text("query-id\tcorpus-id\tscore\nq0 d1 1\n")
    with pytest.raises(DatasetError, match=r"test.tsv:2: expected 3 tab-separated fields, got 1"):
        load_qrels(path)


@pytest.mark.parametrize(
    "record,message",
    [
        ({"_id": "q0", "text": "again"}, ":2: duplicate query id 'q0'"),
        ({"_id": "q1", "text": "  "}, ":2: query 'q1' has an empty text"),
        ({"id": "q1", "text": "x"}, ":2: a query needs '_id' and 'text'"),
    ],
)
def test_bad_queries(tmp_path, record, message):
    path = tmp_path / "queries.jsonl"
    path.write_text(json.dumps({"_id": "q0", "text": "first"}) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DatasetError, match=message):
        load_queries(path)


def test_qrels_naming_unknown_documents_are_logged_not_fatal(beir_dir, caplog):
    with (beir_dir / "qrels" / "test.tsv").open("a") as handle:
        handle.write("q0\tghost-doc\t1\n")
    with caplog.at_level(logging.WARNING, logger="search.data.beir"):
        ds = load_beir(beir_dir)
    assert ds.qrels["test"]["q0"]["ghost-doc"] == 1
    assert "qrels/test.tsv judges 1 documents absent from the corpus, e.g. ['ghost-doc']" in caplog.text
