"""Strict corpus readers (issue 10, item 7): wrong field types, broken CSV quoting, duplicate ids, empty and
zero-width texts, undecodable bytes, each reported with file and line; or skipped and counted with "skip"."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from search.data.beir import load_beir, load_qrels, load_queries
from search.data.datasets import load_dataset
from search.data.plain import load_corpus
from search.data.records import BadRecords, DatasetError, is_blank

GOOD = {"_id": "a", "title": "A", "text": "fine text"}


def write_jsonl(path: Path, *records: object) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "record,message",
    [
        ({"_id": "b", "text": ["a", "list"]}, ":2: 'text' must be a string, got a list"),
        ({"_id": "b", "text": {"an": "object"}}, ":2: 'text' must be a string, got an object"),
        ({"_id": "b", "text": 42}, ":2: 'text' must be a string, got an integer"),
        ({"_id": "b", "text": None}, ":2: 'text' must be a string, got null"),
        ({"_id": "b", "title": ["t"], "text": "x"}, ":2: 'title' must be a string, got a list"),
        ({"_id": 1.5, "text": "x"}, ":2: id field '_id' must be a string or an integer, got a number"),
        ({"_id": True, "text": "x"}, ":2: id field '_id' must be a string or an integer, got a boolean"),
        ({"_id": ["b"], "text": "x"}, ":2: id field '_id' must be a string or an integer, got a list"),
        ({"_id": "b", "text": "\u200b\u200c\u2060\ufeff \n"}, ":2: document 'b' has an empty text"),
        ({"_id": "a", "text": "again"}, ":2: duplicate document id 'a' (first at "),
    ],
)
def test_a_bad_jsonl_record_is_named_with_file_and_line(tmp_path, record, message):
    path = write_jsonl(tmp_path / "c.jsonl", GOOD, record)
    with pytest.raises(DatasetError) as raised:
        load_corpus(path)
    assert f"{path}{message}" in str(raised.value)


def test_integer_ids_titles_null_or_absent_and_a_bom_are_accepted(tmp_path):
    path = tmp_path / "c.jsonl"
    records = [{"_id": 7, "text": "seven"}, {"_id": "b", "title": None, "text": " bee "}]
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in records).encode())
    assert [(d.id, d.title, d.text) for d in load_corpus(path)] == [("7", "", "seven"), ("b", "", "bee")]


def test_undecodable_bytes_name_the_file_and_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match=r"c\.jsonl:2: not valid UTF-8 \(byte 0xe9 at column 26; "):
        load_corpus(path)
    csv_path = tmp_path / "c.csv"
    csv_path.write_bytes(b"id,text\n1,ok\n2,caf\xe9\n")
    with pytest.raises(DatasetError, match=r"c\.csv:3: not valid UTF-8"):
        load_corpus(csv_path)
    tsv_path = tmp_path / "c.tsv"
    tsv_path.write_bytes(b"id\ttext\n1\t\xff\n")
    with pytest.raises(DatasetError, match=r"c\.tsv:2: not valid UTF-8"):
        load_corpus(tsv_path)


@pytest.mark.parametrize(
    "text,message",
    [
        ('id,text\n1,"first\n2,second\n3,third\n', r"c\.csv:2: unterminated quoted field"),  # runs to the end
        ('id,text\n1,"first\n2,second\n3,"third"\n', r"c\.csv:2: broken quoting"),  # closed by a later quote
        ('id,text\n1,"first\n2,second\n3,third"\n', r"c\.csv:2: a quoted field runs over lines 2-4 and line 3 reads"),
        ('id,title,text\n1,t,"abc"def\n', r"c\.csv:2: broken quoting"),
        ('id,text\n1,ok\n2,"also ok"\n1,dup\n', r"c\.csv:4: duplicate document id '1' \(first at .*c\.csv:2\)"),
        ("id,text\n1,ok\n2,\u200b\n", r"c\.csv:3: document '2' has an empty text"),
        ("id,text\n1,ok\n2\n", r"c\.csv:3: 1 fields but the header has 2"),
        ('id,"te\nxt"\n1,ok\n', r"c\.csv:1: header has no column 'text'"),
        ("", r"c\.csv: no header row"),
    ],
)
def test_broken_csv_is_refused_naming_the_line(tmp_path, text, message):
    path = tmp_path / "c.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_corpus(path)


def test_quoted_fields_may_span_lines_and_hold_delimiters_and_quotes(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(
        'id,title,text\n1,One,"line one, with a comma,\nline two, see, also"\n'
        '2,Two,"she said ""hi"""\n\n3,Three,plain\n',
        encoding="utf-8",
    )
    docs = load_corpus(path)
    assert [(d.id, d.text) for d in docs] == [
        ("1", "line one, with a comma,\nline two, see, also"),  # 3 fields on line 3, but not an id-shaped first field
        ("2", 'she said "hi"'),
        ("3", "plain"),
    ]


def test_skip_leaves_bad_records_out_counts_them_and_logs_at_most_ten(tmp_path, caplog):
    lines = [json.dumps(GOOD)] + [json.dumps({"_id": f"x{i}", "text": ["bad"]}) for i in range(12)]
    lines += ["not json", json.dumps({"_id": "ok2", "text": "fine"}), json.dumps({"_id": "a", "text": "dup"})]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="search.data.records"):
        dataset = load_dataset(str(path), on_bad_record="skip")
    assert [d.id for d in dataset.corpus] == ["a", "ok2"]
    assert dataset.skipped_records == 14
    one_by_one = [r for r in caplog.records if r.getMessage().startswith("skipped a bad record")]
    assert len(one_by_one) == 10
    assert f"{path}:2: 'text' must be a string" in one_by_one[0].getMessage()
    assert f"skipped 14 bad records in all (14 in {path})" in caplog.text


def test_skip_resumes_after_an_unterminated_quote(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('id,text\n1,"first\n2,second\n3,third\n', encoding="utf-8")
    bad = BadRecords("skip")
    assert [(d.id, d.text) for d in load_corpus(path, bad=bad)] == [("2", "second"), ("3", "third")]
    assert bad.skipped == 1


def test_a_corpus_with_only_bad_records_is_an_error_even_when_skipping(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", {"_id": "a", "text": ""})
    with pytest.raises(DatasetError, match=r"c\.jsonl: the corpus is empty \(1 bad records skipped\)"):
        load_corpus(path, bad=BadRecords("skip"))


def test_text_folder_files_are_records(tmp_path):
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "a.txt").write_text("apple")
    (folder / "b.txt").write_text("\u200b \n")
    (folder / "c.txt").write_bytes(b"\xff")
    with pytest.raises(DatasetError, match=r"b\.txt: document 'b' has an empty text"):
        load_corpus(folder)
    bad = BadRecords("skip")
    assert [d.id for d in load_corpus(folder, bad=bad)] == ["a"]
    assert bad.skipped == 2


def test_beir_queries_and_qrels_are_read_as_strictly(beir_dir):
    queries = beir_dir / "queries.jsonl"
    write_jsonl(queries, {"_id": "q0", "text": "fine"}, {"_id": "q1", "text": ["list"]})
    with pytest.raises(DatasetError, match=r"queries\.jsonl:2: 'text' must be a string, got a list"):
        load_queries(queries)
    write_jsonl(queries, {"_id": "q0", "text": "fine"}, {"_id": "q1", "text": "\u200b"})
    with pytest.raises(DatasetError, match=r"queries\.jsonl:2: query 'q1' has an empty text"):
        load_queries(queries)
    queries.write_bytes(b'{"_id": "q0", "text": "\xe9"}\n')
    with pytest.raises(DatasetError, match=r"queries\.jsonl:1: not valid UTF-8"):
        load_beir(beir_dir)
    write_jsonl(queries, {"_id": 0, "text": "zero"}, {"_id": "q1", "text": "one"})
    assert load_queries(queries) == {"0": "zero", "q1": "one"}
    qrels = beir_dir / "qrels" / "test.tsv"
    qrels.write_bytes(b"query-id\tcorpus-id\tscore\nq0\tvitamin-0\t1\nq\xff\tvitamin-1\t1\n")
    with pytest.raises(DatasetError, match=r"test\.tsv:3: not valid UTF-8"):
        load_qrels(qrels)
    corpus = beir_dir / "corpus.jsonl"
    corpus.write_text(corpus.read_text() + json.dumps({"_id": "z", "text": {"x": 1}}) + "\n")
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:61: 'text' must be a string, got an object"):
        load_beir(beir_dir)
    dataset = load_beir(beir_dir, on_bad_record="skip")
    assert len(dataset.corpus) == 60
    assert dataset.skipped_records == 2  # the corpus line and the qrels line
    assert dataset.qrels["test"] == {"q0": {"vitamin-0": 1}}


def test_policies_and_blank_texts():
    with pytest.raises(ValueError, match="unknown bad-record policy 'ignore': use one of fail, skip"):
        BadRecords("ignore")
    assert is_blank("")
    assert is_blank(" \t\n")
    assert is_blank("\u200b\u200d\ufeff\u00a0\u2028")
    assert not is_blank("\u200bx")
    assert not is_blank("é")
