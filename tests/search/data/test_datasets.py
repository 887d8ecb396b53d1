import json
import urllib.error
from pathlib import Path

import pytest

from search.data import datasets
from search.data.datasets import DatasetError, corpus_fingerprint, load_beir, load_corpus, load_dataset

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "scifact"


def test_load_beir_with_graded_qrels(beir_dir):
    ds = load_beir(beir_dir)
    assert len(ds.corpus) == 60 and len(ds.queries) == 10
    assert set(ds.qrels) == {"test", "train"}
    assert ds.qrels["test"]["q0"] == {"vitamin-0": 2, "vitamin-1": 1}
    ids, texts, judged = ds.split_queries("test")
    assert ids == ["q0", "q1", "q2", "q3", "q4"] and texts[0] == ds.queries["q0"] and judged is ds.qrels["test"]
    with pytest.raises(DatasetError, match="no qrels for split 'dev'; available: test, train"):
        ds.split_queries("dev")


def test_document_full_text_joins_title_and_text():
    doc = datasets.Document("1", "A title", "The body.")
    assert doc.full_text() == "A title The body."
    assert datasets.Document("2", "", "Body only").full_text() == "Body only"


def test_malformed_line_is_reported_with_file_and_line(beir_dir):
    corpus = beir_dir / "corpus.jsonl"
    lines = corpus.read_text().splitlines()
    lines[3] = '{"_id": "broken", "text": '
    corpus.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"{corpus}:4: malformed JSON"):
        load_beir(beir_dir)


@pytest.mark.parametrize(
    "record,message",
    [
        ({"_id": "vitamin-0", "title": "", "text": "dup"}, "duplicate document id 'vitamin-0'"),
        ({"_id": "empty", "title": "t", "text": "   "}, ":61: document 'empty' has an empty text"),
        ({"id": "x", "text": "no _id"}, ":61: no id field '_id'"),
        (["not", "an", "object"], ":61: expected a JSON object"),
    ],
)
def test_bad_records_name_the_problem(beir_dir, record, message):
    with (beir_dir / "corpus.jsonl").open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    with pytest.raises(DatasetError, match=message):
        load_beir(beir_dir)


def test_bad_qrels_line(beir_dir):
    (beir_dir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\tvitamin-0\tvery\n")
    with pytest.raises(DatasetError, match=r"test.tsv:2: relevance 'very' is not an integer"):
        load_beir(beir_dir)


def test_jsonl_csv_tsv_and_text_folder(tmp_path):
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"doc": "a", "body": "alpha text", "name": "A"}\n{"doc": "b", "body": "beta"}\n')
    docs = load_corpus(jsonl, id_field="doc", text_field="body", title_field="name")
    assert [(d.id, d.title, d.text) for d in docs] == [("a", "A", "alpha text"), ("b", "", "beta")]

    csv_path = tmp_path / "c.csv"
    csv_path.write_text('id,title,text\n1,One,"first, with comma"\n2,Two,second\n')
    assert [d.text for d in load_corpus(csv_path)] == ["first, with comma", "second"]

    tsv = tmp_path / "c.tsv"
    tsv.write_text("id\ttext\n1\tfirst\n2\t\n")
    with pytest.raises(DatasetError, match=r"c.tsv:3: document '2' has an empty text"):
        load_corpus(tsv)

    folder = tmp_path / "txt"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("apple pie")
    (folder / "sub" / "b.txt").write_text("banana split")
    assert [(d.id, d.title) for d in load_corpus(folder)] == [("a", "a"), ("sub/b", "b")]


def test_csv_errors(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("key,text\n1,x\n")
    with pytest.raises(DatasetError, match="header has no column 'id'"):
        load_corpus(path)
    path.write_text("id,text\n1,x,extra\n")
    with pytest.raises(DatasetError, match=r"c.csv:2: more fields"):
        load_corpus(path)
    xml = tmp_path / "c.xml"
    xml.write_text("<x/>")
    with pytest.raises(DatasetError, match="unknown corpus format '.xml'; use one of jsonl, csv, tsv, txt-folder"):
        load_corpus(xml)


def test_named_dataset_search_order(tmp_path, monkeypatch, beir_dir):
    root = tmp_path / "data_root"
    (root / "scifact").parent.mkdir(parents=True)
    beir_dir.rename(root / "scifact")
    monkeypatch.setenv("SEMSEARCH_DATA", str(root))
    assert load_dataset("scifact").path == root / "scifact"


def test_missing_named_dataset_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMSEARCH_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(datasets, "dataset_search_path", lambda: [tmp_path / "nowhere"])
    with pytest.raises(DatasetError, match=r"dataset 'scifact' not found in .*nowhere.*SEMSEARCH_DATA.*scifact.zip"):
        load_dataset("scifact", download=False)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", offline)
    with pytest.raises(DatasetError, match="download failed: <urlopen error no network>"):
        load_dataset("scifact")


def test_unknown_dataset_lists_options():
    with pytest.raises(DatasetError, match="unknown dataset 'nope': use one of scifact"):
        load_dataset("nope")


def test_corpus_fingerprint_changes_with_content(beir_dir):
    corpus = load_beir(beir_dir).corpus
    changed = (datasets.Document(corpus[0].id, corpus[0].title, corpus[0].text + "!"),) + corpus[1:]
    assert corpus_fingerprint(corpus) == corpus_fingerprint(list(corpus))
    assert corpus_fingerprint(corpus) != corpus_fingerprint(changed)


@pytest.mark.skipif(not SCIFACT.exists(), reason="needs ../shared/datasets/scifact")
def test_real_scifact_counts():
    ds = load_dataset("scifact", download=False)
    assert len(ds.corpus) == 5183 and len(ds.queries) == 1109
    assert len(ds.qrels["test"]) == 300 and sum(map(len, ds.qrels["test"].values())) == 339
    assert len(ds.qrels["train"]) == 809 and sum(map(len, ds.qrels["train"].values())) == 919
