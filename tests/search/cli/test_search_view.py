"""`semsearch search` output: snippets on a corpus without titles, and `--compare` (side by side or stacked, shared
hits marked, API-identical JSON) checked against each index searched alone; one-line errors for bad options."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from typer.testing import CliRunner, Result

import search.cli.index as index_command
from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from search.cli import app
from search.cli.views import NARROW_COLUMNS, one_line
from search.data.datasets import load_beir
from search.pipeline import build_index_dir
from search.serve.app import ServerConfig, create_app
from search.sources import PipelineSource
from semsearch_common.threads import limit_threads

runner = CliRunner()
QUERY = "vitamin bone calcium"  # on the tiny dataset the two fake pipelines share some of their top 5, not all
K = 5
MARK = re.compile(r"(?<!\S)=(\d+)(?!\S)")  # a shared-hit marker, `=N`, standing alone


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny indexes build in milliseconds on one thread but can take seconds when OpenMP threads contend."""
    with limit_threads(1):
        yield


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


@pytest.fixture
def console_width(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """`console_width(n)`: `semsearch search` prints to a console n columns wide (as a terminal that wide would)."""

    def set_width(width: int) -> None:
        monkeypatch.setattr(index_command, "console", Console(width=width))

    return set_width


def search_alone(index_dir: Path, query: str = QUERY, k: int = K) -> list[dict]:
    result = invoke("search", query, "--index-dir", str(index_dir), "-k", str(k), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["hits"]


def compare_args(index_dirs: dict[str, Path], *extra: str) -> list[str]:
    return ["search", QUERY, "--index-dir", str(index_dirs["compressed"]), "--compare", str(index_dirs["teacher"]),
            "-k", str(K), *extra]  # fmt: skip


@pytest.fixture
def untitled(tmp_path: Path, write_beir) -> tuple[list[dict], dict[str, Path]]:
    """The tiny dataset without titles, its texts long and holding runs of whitespace (so snippets are cut and
    flattened) and opening with a word of their own, and two fake-encoder indexes of it; returns the corpus records
    and the index directories."""
    root = write_beir(tmp_path / "untitled")
    docs = [json.loads(line) for line in (root / "corpus.jsonl").read_text().splitlines()]
    for i, doc in enumerate(docs):
        doc["title"] = ""
        doc["text"] = f"passage{i} {doc['text']}\n\n\t" + " ".join(["filler words about the topic"] * 12)
    (root / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    dataset = load_beir(root)
    folders = {"teacher": tmp_path / "untitled-ix" / "teacher", "small": tmp_path / "untitled-ix" / "small"}
    build_index_dir(dataset, FakeEncoder(dim=64), IndexSpec("Flat"), folders["teacher"], show_progress=False)
    build_index_dir(dataset, FakeEncoder(dim=32), IndexSpec("Flat"), folders["small"], show_progress=False)
    return docs, folders


def test_snippet_shown_for_a_corpus_without_titles(untitled, console_width):
    docs, folders = untitled
    target = docs[7]
    query = " ".join(target["text"].split())  # the document's own words: it is the top hit, whatever the index

    console_width(250)
    result = invoke("search", query, "--index-dir", str(folders["teacher"]), "-k", "3")

    assert result.exit_code == 0, result.output
    top = next(line for line in result.stdout.splitlines() if re.match(r"^│\s+1 │", line))
    assert f" {target['_id']} " in top
    opening = " ".join(target["text"].split()[:8])  # flattened: the tab and newlines are single spaces
    assert opening in top and top.rstrip(" │").endswith("…")  # cut, with an ellipsis
    assert "\t" not in result.stdout
    assert re.search(r"tokenize .* ms, encode .* ms, search .* ms, rescore .* ms, total .* ms", result.stdout)


@pytest.mark.parametrize("width", [60, 160])
def test_compare_shows_snippets_for_a_corpus_without_titles(untitled, console_width, width):
    docs, folders = untitled
    target = docs[7]
    query = " ".join(target["text"].split())
    args = ["search", query, "--index-dir", str(folders["small"]), "--compare", str(folders["teacher"]), "-k", "3"]

    console_width(width)
    result = invoke(*args)

    assert result.exit_code == 0, result.output
    own_word = target["text"].split()[0]  # passage7: no other document holds it
    assert result.stdout.count(own_word) == 1 + 2  # the query in the heading, and each pipeline's top hit


def test_one_line_flattens_and_cuts_with_an_ellipsis():
    assert one_line("a\n\tb   c", 10) == "a b c"
    cut = one_line("alpha beta gamma delta epsilon", 20)
    assert len(cut) <= 20
    assert cut.endswith("…")
    assert "alpha beta gamma".startswith(cut[:-1])
    assert one_line("", 5) == ""


def test_compare_json_matches_each_index_searched_alone(index_dirs):
    reference = [hit["id"] for hit in search_alone(index_dirs["teacher"])]
    other = [hit["id"] for hit in search_alone(index_dirs["compressed"])]
    shared = set(reference) & set(other)
    assert 0 < len(shared) < K  # the test needs a partial overlap to mean anything

    result = invoke(*compare_args(index_dirs, "--json"))

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["reference"] == "teacher"
    assert body["k"] == K
    assert body["query"] == QUERY
    assert list(body["pipelines"]) == ["small", "teacher"]  # --index-dir first, as loaded
    teacher, small = body["pipelines"]["teacher"], body["pipelines"]["small"]
    assert [hit["id"] for hit in teacher["hits"]] == reference
    assert [hit["id"] for hit in small["hits"]] == other
    assert teacher["recall@k_vs_teacher"] == 1.0
    assert teacher["missing"] == teacher["extra"] == []
    assert small["recall@k_vs_teacher"] == pytest.approx(len(shared) / len(reference))
    assert small["missing"] == [doc for doc in reference if doc not in shared]
    assert small["extra"] == [doc for doc in other if doc not in shared]
    want_ranks = [reference.index(doc) + 1 if doc in shared else None for doc in other]
    assert [hit["reference_rank"] for hit in small["hits"]] == want_ranks
    assert small["speedup_vs_reference"] == pytest.approx(
        teacher["timings"]["total_ms"] / small["timings"]["total_ms"], rel=1e-6
    )


def test_compare_json_has_the_http_compare_shape(index_dirs):
    """`--json` prints `CompareResult.to_dict`, which `/compare` answers too (plus the server's batch sizes)."""
    cli = json.loads(invoke(*compare_args(index_dirs, "--json")).stdout)
    sources = (PipelineSource("small", index_dirs["compressed"]), PipelineSource("teacher", index_dirs["teacher"]))
    with TestClient(create_app(ServerConfig(pipelines=sources)), base_url="http://127.0.0.1") as client:
        http = client.post("/compare", json={"query": QUERY, "k": K}).json()

    def scores(body: dict) -> list[float]:
        return [hit.pop("score") for name in sorted(body["pipelines"]) for hit in body["pipelines"][name]["hits"]]

    np.testing.assert_allclose(scores(cli), scores(http), atol=1e-5)  # the rest has no timing in it: equal
    # the server's own additions: how many queries its batcher encoded together with this one (alone here), and
    # what it is still encoding (nothing to say: this server takes no writes)
    assert [compared.pop("batch_size") for compared in http["pipelines"].values()] == [1, 1]
    assert http.pop("encoding") is None
    for body in (cli, http):
        for compared in body["pipelines"].values():
            compared["timings"] = sorted(compared["timings"])
            compared["speedup_vs_reference"] = None
    assert cli == http


@pytest.mark.parametrize("width", [60, 160])
def test_compare_text_marks_exactly_the_shared_hits(index_dirs, console_width, width):
    reference = [hit["id"] for hit in search_alone(index_dirs["teacher"])]
    other = [hit["id"] for hit in search_alone(index_dirs["compressed"])]
    shared = set(reference) & set(other)

    console_width(width)
    result = invoke(*compare_args(index_dirs))

    assert result.exit_code == 0, result.output
    text = result.stdout
    assert all(len(line) <= width for line in text.splitlines())
    stacked = width < NARROW_COLUMNS
    assert ("┃ ref ┃" in text) == stacked  # a narrow console stacks one table per pipeline
    marks = [int(rank) for rank in MARK.findall(text)]
    assert sorted(marks) == sorted(reference.index(doc) + 1 for doc in shared)
    assert len(re.findall(r"(?<!\S)\+(?!\S)", text)) == K - len(shared)  # `+`: the reference did not find it
    assert f"recall@{K} vs teacher {len(shared) / len(reference):.2f}" in text
    for doc in reference:
        assert (f"missed {doc} (teacher rank {reference.index(doc) + 1})" in text) == (doc not in shared)
    assert text.count("tokenize ") == 2
    assert text.count("total ") == 2  # each pipeline's stage timings


def test_compare_names_and_reference(index_dirs):
    args = ["search", QUERY, "--index-dir", str(index_dirs["teacher"]), "--compare", f"pq={index_dirs['compressed']}",
            "-k", str(K), "--json"]  # fmt: skip
    body = json.loads(invoke(*args).stdout)
    assert list(body["pipelines"]) == ["teacher", "pq"]
    assert body["reference"] == "teacher"  # teacher, by name

    body = json.loads(invoke(*args, "--reference", "pq").stdout)
    assert body["reference"] == "pq"
    assert body["pipelines"]["pq"]["recall@k_vs_teacher"] == 1.0
    assert [hit["reference_rank"] for hit in body["pipelines"]["pq"]["hits"]] == list(range(1, K + 1))


def test_reference_defaults_to_the_first_compared_without_a_teacher(index_dirs):
    args = ["search", QUERY, "--index-dir", str(index_dirs["compressed"]), "--compare", f"a={index_dirs['teacher']}",
            "--compare", f"b={index_dirs['compressed']}", "-k", "3", "--json"]  # fmt: skip
    body = json.loads(invoke(*args).stdout)
    assert body["reference"] == "a"
    assert list(body["pipelines"]) == ["small", "a", "b"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--compare", "{missing}"], "missing"),
        (["--compare", "{broken}"], "meta.json"),
        (["--compare", "{teacher}", "--reference", "nope"], "'nope'"),
        (["--compare", "{teacher}", "--compare", "{teacher}"], "'teacher' is used 2 times"),
        (["--compare", "small={teacher}"], "'small' is used 2 times"),
        (["--compare", "{teacher}", "-k", "0"], "k must be >= 1"),
        (["--reference", "teacher"], "--compare"),
    ],
)
def test_bad_compare_options_are_one_line_errors(index_dirs, tmp_path, extra, needle):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text("{not json")
    folders = {"missing": tmp_path / "missing", "broken": broken, "teacher": index_dirs["teacher"]}
    args = ["search", QUERY, "--index-dir", str(index_dirs["compressed"]), *(a.format(**folders) for a in extra)]

    result = invoke(*args)

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert needle in lines[0], result.stderr


def test_indexes_of_different_corpora_are_refused(index_dirs, untitled):
    _, folders = untitled  # another corpus (the untitled one)
    args = ["search", QUERY, "--index-dir", str(index_dirs["compressed"]), "--compare", str(folders["teacher"])]

    result = invoke(*args)

    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "hold different corpora" in lines[0], result.stderr
