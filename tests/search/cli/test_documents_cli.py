"""`semsearch add`, `delete` and `show` on index directories written in place, and `semsearch search --filter` (alone
and with --compare) on what they wrote; user errors are one line on stderr and exit status 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from search.cli import app
from search.data.beir import load_beir
from search.pipeline import Pipeline, build_index_dir

runner = CliRunner()
KINDS = {"flat": ("Flat", 32), "hnsw": ("HNSW16", 32)}
NEW = [
    {"_id": "z1", "title": "zebra", "text": "giraffe savanna acacia", "metadata": {"bucket": 3, "lang": "sw"}},
    {"_id": "heart-3", "title": "rewritten", "text": "okapi rainforest congo", "metadata": {"bucket": 4, "rare": True}},
]


def invoke(*args: str | Path) -> Result:
    return runner.invoke(app, [str(arg) for arg in args])


def ok_json(result: Result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line_error(result: Result, *named: str) -> str:
    """Exit status 2 and stderr one line `error: ...` naming every `named`, without a traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for text in named:
        assert text in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def full_text(record: dict) -> str:
    return f"{record['title']} {record['text']}"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def templates(tmp_path_factory, write_beir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("writable")
    dataset = load_beir(write_beir(root / "tiny"))
    for name, (factory, dim) in KINDS.items():
        build_index_dir(
            dataset, FakeEncoder(dim=dim), IndexSpec(factory), root / name, show_progress=False, use_cache=False
        )
    return {name: root / name for name in KINDS}


@pytest.fixture
def dirs(templates, tmp_path) -> dict[str, Path]:
    """Copies of a Flat and an HNSW16 directory over the tiny dataset (60 documents), fake encoder 32 d."""
    return {name: Path(shutil.copytree(path, tmp_path / name)) for name, path in templates.items()}


def search_ids(index_dir: Path, query: str, *options: str) -> list[str]:
    hits = ok_json(invoke("search", query, "--index-dir", index_dir, "-k", "70", "--json", *options))["hits"]
    return [hit["id"] for hit in hits]


def test_add_search_show_delete_round_trip(dirs, tmp_path):
    file = write_jsonl(tmp_path / "new.jsonl", NEW)
    added = ok_json(invoke("add", file, "--index-dir", dirs["flat"], "--index-dir", dirs["hnsw"], "--json"))
    assert (added["added"], added["replaced"], added["versions"]) == (1, 1, "1..2")
    assert set(added["index_dirs"]) == {str(dirs["flat"]), str(dirs["hnsw"])}
    assert all(d["documents"] == 61 for d in added["index_dirs"].values())

    for name, index_dir in dirs.items():
        for record in NEW:
            assert search_ids(index_dir, full_text(record))[0] == record["_id"], name
        # the filter selects exactly the written documents carrying the value
        assert search_ids(index_dir, "zebra", "--filter", '{"bucket": 3}') == ["z1"], name
        assert search_ids(index_dir, "anything", "--filter", '{"rare": true}') == ["heart-3"], name
        assert sorted(search_ids(index_dir, "anything", "--filter", '{"bucket": {"gte": 3}}')) == ["heart-3", "z1"]
        assert search_ids(index_dir, "zebra", "--filter", '{"bucket": "3"}') == []  # "3" is not 3

    compared = ok_json(
        invoke("search", full_text(NEW[0]), "--index-dir", dirs["flat"], "--compare", f"hnsw={dirs['hnsw']}",
               "--filter", '{"lang": {"in": ["sw", "de"]}}', "-k", "5", "--json")
    )  # fmt: skip
    assert set(compared["pipelines"]) == {"flat", "hnsw"}
    for name, found in compared["pipelines"].items():
        assert [hit["id"] for hit in found["hits"]] == ["z1"], name

    for index_dir in dirs.values():
        shown = ok_json(invoke("show", "heart-3", "--index-dir", index_dir, "--json"))
        assert shown == {
            "id": "heart-3", "title": "rewritten", "snippet": "okapi rainforest congo",
            "metadata": {"bucket": 4, "rare": True}, "version": 2, "state": "live",
        }  # fmt: skip
    text = invoke("show", "z1", "--index-dir", dirs["hnsw"])
    assert text.exit_code == 0, text.output
    assert "state: live" in text.stdout
    assert "'bucket': 3" in text.stdout

    deleted = ok_json(
        invoke("delete", "z1", "no-such-doc", "--index-dir", dirs["flat"], "--index-dir", dirs["hnsw"], "--json")
    )
    assert deleted == {"deleted": ["z1"], "not_found": ["no-such-doc"], "version": 3}  # a miss takes no version
    for name, index_dir in dirs.items():
        assert "z1" not in search_ids(index_dir, full_text(NEW[0])), name
        assert "heart-3" in search_ids(index_dir, full_text(NEW[1])), name
        one_line_error(invoke("show", "z1", "--index-dir", index_dir), "holds no document 'z1'")
    text = invoke("delete", "heart-3", "--index-dir", dirs["flat"], "--index-dir", dirs["hnsw"])
    assert text.exit_code == 0, text.output
    assert "deleted: ['heart-3']" in text.stdout
    assert "not_found: []" in text.stdout


def test_add_replacing_a_document_again_reports_it_replaced(dirs, tmp_path):
    file = write_jsonl(tmp_path / "new.jsonl", NEW)
    ok_json(invoke("add", file, "--index-dir", dirs["flat"], "--json"))
    again = write_jsonl(tmp_path / "again.jsonl", [{**NEW[0], "title": "zebra two", "metadata": {"bucket": 5}}])
    result = ok_json(invoke("add", again, "--index-dir", dirs["flat"], "--json"))
    assert (result["added"], result["replaced"], result["versions"]) == (0, 1, "3..3")
    assert result["index_dirs"][str(dirs["flat"])]["documents"] == 61
    assert search_ids(dirs["flat"], "zebra", "--filter", '{"bucket": 3}') == []
    assert search_ids(dirs["flat"], "zebra", "--filter", '{"bucket": 5}') == ["z1"]
    shown = ok_json(invoke("show", "z1", "--index-dir", dirs["flat"], "--json"))
    assert (shown["title"], shown["version"], shown["metadata"]) == ("zebra two", 3, {"bucket": 5})


def test_add_refuses_a_directory_open_for_writes_elsewhere(dirs, tmp_path):
    """Another writer (here a pipeline opened for writes in this process: a server with --writes holds the same
    lock) keeps `add` out with one line, and nothing is written to any of the directories."""
    file = write_jsonl(tmp_path / "new.jsonl", NEW)
    holder = Pipeline.load(dirs["flat"], writable=True)
    try:
        refused = invoke("add", file, "--index-dir", dirs["hnsw"], "--index-dir", dirs["flat"])
        one_line_error(refused, str(dirs["flat"]), "is open for writes by another process")
        refused = invoke("delete", "vitamin-0", "--index-dir", dirs["flat"])
        one_line_error(refused, "is open for writes by another process")
    finally:
        holder.live.close()
    for index_dir in dirs.values():
        one_line_error(invoke("show", "z1", "--index-dir", index_dir), "holds no document 'z1'")
        assert ok_json(invoke("show", "vitamin-0", "--index-dir", index_dir, "--json"))["state"] == "live"
    added = ok_json(invoke("add", file, "--index-dir", dirs["hnsw"], "--index-dir", dirs["flat"], "--json"))
    assert added["versions"] == "1..2"  # the refused commands took no version


def test_add_to_a_directory_that_cannot_take_writes_writes_nowhere(index_dirs, tmp_path):
    """The conftest's compressed pipeline re-ranks with ,RFlat: refused before anything is written to the teacher."""
    file = write_jsonl(tmp_path / "new.jsonl", NEW)
    refused = invoke("add", file, "--index-dir", index_dirs["teacher"], "--index-dir", index_dirs["compressed"])
    one_line_error(refused, ",RFlat", "rebuild it without ,RFlat")
    one_line_error(invoke("show", "z1", "--index-dir", index_dirs["teacher"]), "holds no document")
    assert ok_json(invoke("add", file, "--index-dir", index_dirs["teacher"], "--json"))["added"] == 1


@pytest.mark.parametrize(
    "line,named",
    [
        ('{"_id": "bad", "text": "t", "metadata": {"tags": ["a", "b"]}}', "metadata['tags'] is list"),
        ('{"_id": "bad", "text": "t", "metadata": {"author": {"name": "x"}}}', "metadata['author'] is dict"),
        ('{"_id": "bad", "text": "t", "metadata": {"year": null}}', "metadata['year'] is null"),
        ('{"_id": "bad", "text": "t", "metadata": {"score": NaN}}', "metadata['score']: nan is not a finite number"),
        ('{"_id": "bad", "text": "t", "metadata": "en"}', "metadata must be a JSON object"),
        ('{"_id": "bad", "text": "t", "metadata": {"$x": 1}}', "'$x'"),
        ('{"_id": "z1", "text": "the same id twice"}', "z1"),
    ],
)
def test_add_with_a_bad_record_names_file_and_line_and_writes_nothing(dirs, tmp_path, line, named):
    file = tmp_path / "new.jsonl"
    file.write_text(json.dumps(NEW[0]) + "\n" + line + "\n")
    one_line_error(invoke("add", file, "--index-dir", dirs["flat"], "--index-dir", dirs["hnsw"]), f"{file}:2", named)
    for index_dir in dirs.values():
        one_line_error(invoke("show", "z1", "--index-dir", index_dir), "holds no document 'z1'")


def test_add_skips_bad_records_when_told(dirs, tmp_path):
    file = tmp_path / "new.jsonl"
    file.write_text(json.dumps(NEW[0]) + "\n" + '{"_id": "bad", "text": "t", "metadata": {"tags": [1]}}\n')
    added = ok_json(invoke("add", file, "--index-dir", dirs["flat"], "--on-bad-record", "skip", "--json"))
    assert (added["added"], added["versions"]) == (1, "1..1")
    assert search_ids(dirs["flat"], "zebra", "--filter", '{"lang": "sw"}') == ["z1"]
    one_line_error(invoke("show", "bad", "--index-dir", dirs["flat"]), "holds no document 'bad'")


@pytest.mark.parametrize(
    "spec,named",
    [
        ('{"bucket": 3', "filter is not valid JSON"),
        ("[1, 2]", "filter must be a JSON object"),
        ('{"year": {"between": [1, 2]}}', "unknown operator 'between'"),
        ('{"lang": {"gt": "en"}}', "filter['lang']['gt'] needs a finite number"),
        ('{"bucket": {"in": []}}', "filter['bucket']['in'] needs a list"),
    ],
)
def test_search_with_a_bad_filter_is_one_line(dirs, spec, named):
    one_line_error(invoke("search", "heart", "--index-dir", dirs["flat"], "--filter", spec), named)
    compared = invoke("search", "heart", "--index-dir", dirs["flat"], "--compare", dirs["hnsw"], "--filter", spec)
    one_line_error(compared, named)


def test_delete_and_show_refuse_what_they_cannot_do(dirs):
    one_line_error(invoke("delete", "z1", "--index-dir", dirs["flat"], "--index-dir", dirs["flat"]), "given twice")
    one_line_error(invoke("show", "z1", "--index-dir", dirs["flat"].parent / "missing"), "missing")
    missing = ok_json(invoke("delete", "nothing-here", "--index-dir", dirs["flat"], "--json"))
    assert (missing["deleted"], missing["not_found"]) == ([], ["nothing-here"])
    assert len(search_ids(dirs["flat"], "heart")) == 60
