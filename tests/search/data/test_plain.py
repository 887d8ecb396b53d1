import json

import pytest

from search.data.plain import load_corpus
from search.data.records import DatasetError


def test_jsonl_with_custom_fields_and_missing_titles(tmp_path):
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"doc": "a", "body": " alpha text ", "name": "A"}\n\n{"doc": 7, "body": "beta"}\n')
    docs = load_corpus(jsonl, id_field="doc", text_field="body", title_field="name")
    assert [(d.id, d.title, d.text) for d in docs] == [("a", "A", "alpha text"), ("7", "", "beta")]
    assert [d.title for d in load_corpus(jsonl, id_field="doc", text_field="body", title_field=None)] == ["", ""]


@pytest.mark.parametrize(
    "record,message",
    [
        ({"_id": "a", "title": "", "text": "dup"}, "duplicate document id 'a'"),
        ({"_id": "empty", "title": "t", "text": "   "}, ":2: document 'empty' has an empty text"),
        ({"id": "x", "text": "no _id"}, ":2: no id field '_id'"),
        ({"_id": "x", "body": "no text"}, ":2: no text field 'text'"),
        ({"_id": " ", "text": "blank id"}, ":2: id field '_id' is empty"),
        (["not", "an", "object"], ":2: expected a JSON object, got a list"),
    ],
)
def test_bad_jsonl_records_name_file_line_and_problem(tmp_path, record, message):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"_id": "a", "text": "fine"}) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DatasetError, match=message):
        load_corpus(path)


def test_malformed_json_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "a", "text": "fine"}\n{"_id": "b", "text": \n')
    with pytest.raises(DatasetError, match=rf"{path}:2: malformed JSON"):
        load_corpus(path)


def test_csv_and_tsv(tmp_path):
    csv_path = tmp_path / "c.csv"
    csv_path.write_text('id,title,text\n1,One,"first, with comma"\n2,Two,second\n')
    assert [(d.id, d.title, d.text) for d in load_corpus(csv_path)] == [
        ("1", "One", "first, with comma"),
        ("2", "Two", "second"),
    ]
    tsv = tmp_path / "c.tsv"
    tsv.write_text("id\ttext\n1\tfirst, no split\n")
    assert [(d.id, d.title, d.text) for d in load_corpus(tsv)] == [("1", "", "first, no split")]
    tsv.write_text("id\ttext\n1\tfirst\n2\t\n")
    with pytest.raises(DatasetError, match=r"c.tsv:3: document '2' has an empty text"):
        load_corpus(tsv)


def test_csv_errors_and_unknown_formats(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("key,text\n1,x\n")
    with pytest.raises(DatasetError, match=r"c.csv:1: header has no column 'id' \(columns: key, text\)"):
        load_corpus(path)
    path.write_text("id,text\n1,x,extra\n")
    with pytest.raises(DatasetError, match=r"c.csv:2: 3 fields but the header has 2"):
        load_corpus(path)
    xml = tmp_path / "c.xml"
    xml.write_text("<x/>")
    with pytest.raises(DatasetError, match="unknown corpus format '.xml'; use one of jsonl, csv, tsv, txt-folder"):
        load_corpus(xml)
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_corpus(tmp_path / "gone.jsonl")


def test_text_folder(tmp_path):
    folder = tmp_path / "txt"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("apple pie")
    (folder / "sub" / "b.txt").write_text("banana split\n")
    (folder / "notes.md").write_text("ignored")
    assert [(d.id, d.title, d.text) for d in load_corpus(folder)] == [
        ("a", "a", "apple pie"),
        ("sub/b", "b", "banana split"),
    ]
    (folder / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(DatasetError, match="bad.txt: not valid UTF-8"):
        load_corpus(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no .txt files found"):
        load_corpus(tmp_path / "empty")
