"""A living index through the HTTP API: PUT/DELETE/GET /documents and /documents/status on writable pipelines, the
refusals of hostile writes (each a 4xx naming the problem, nothing half-applied), and metadata filters on /search and
/compare, checked against exact filtered searches computed here with numpy from the fake encoder's vectors."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from search.data.beir import load_beir
from search.data.records import Dataset
from search.pipeline import build_index_dir
from search.serve.app import create_app
from search.serve.config import Security, ServerConfig, ServerLimits
from search.sources import PipelineSource

LOCAL = "http://127.0.0.1"
KEY = "write-key"
AUTH = {"authorization": f"Bearer {KEY}"}
JSON = {"content-type": "application/json"}
# Writable pipelines over one corpus: two share a document encoder (fake, 32 d), the IVF one has its own (48 d);
# Flat and HNSW hide removed positions, IVF removes them in place.
WRITABLE = {"flat": ("Flat", 32), "hnsw": ("HNSW16", 32), "ivf": ("IVF4,Flat", 48)}
WAIT_S = 20.0


# --- fixtures and helpers ---------------------------------------------------------------------------------------------


def build_dirs(dataset: Dataset, root: Path, kinds: dict[str, tuple[str, int]], vectors: str = "fp16") -> dict:
    dirs = {}
    for name, (factory, dim) in kinds.items():
        spec = IndexSpec(factory, vectors=vectors)
        build_index_dir(dataset, FakeEncoder(dim=dim), spec, root / name, show_progress=False, use_cache=False)
        dirs[name] = root / name
    return dirs


def copies(dirs: dict[str, Path], root: Path) -> dict[str, Path]:
    return {name: Path(shutil.copytree(path, root / name)) for name, path in dirs.items()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, write_beir) -> tuple[Dataset, dict[str, Path]]:
    """The tiny dataset (60 documents, no metadata) and its three writable index directories, built once: tests
    write to copies (`dirs`)."""
    root = tmp_path_factory.mktemp("living")
    dataset = load_beir(write_beir(root / "tiny"))
    return dataset, build_dirs(dataset, root, WRITABLE)


@pytest.fixture
def dataset(corpus) -> Dataset:
    return corpus[0]


@pytest.fixture
def dirs(corpus, tmp_path) -> dict[str, Path]:
    return copies(corpus[1], tmp_path)


def serve(
    dirs: dict[str, Path], writes: bool = True, limits: ServerLimits | None = None, key: bool = True
) -> TestClient:
    """The server over `dirs` (with the API key, sent by the client unless `key` is False)."""
    sources = tuple(PipelineSource(name, path) for name, path in dirs.items())
    config = ServerConfig(
        pipelines=sources, writes=writes, security=Security(api_key=KEY), limits=limits or ServerLimits()
    )
    return TestClient(create_app(config), base_url=LOCAL, headers=AUTH if key else None)


def status(client: TestClient) -> dict[str, Any]:
    response = client.get("/documents/status")
    assert response.status_code == 200, response.text
    return response.json()


def wait_encoded(client: TestClient) -> dict[str, Any]:
    """Poll /documents/status until nothing is pending or being encoded (at most WAIT_S); return the status."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = status(client)
        if found["pending"] == 0 and found["in_flight"] == 0:
            return found
        assert time.monotonic() < deadline, f"still encoding after {WAIT_S} s: {found}"
        time.sleep(0.02)


def snapshot(client: TestClient) -> dict[str, tuple[int, int, int, int]]:
    """Per pipeline: (version, documents, pending, index size): what a refused write must leave as it was."""
    keys = ("version", "documents", "pending", "index_ntotal")
    return {name: tuple(p[key] for key in keys) for name, p in status(client)["pipelines"].items()}


def search(client: TestClient, query: str, k: int = 5, pipeline: str | None = None, **extra) -> list[dict]:
    response = client.post("/search", json={"query": query, "k": k, "pipeline": pipeline, **extra})
    assert response.status_code == 200, response.text
    return response.json()["hits"]


def put(client: TestClient, *docs: dict) -> Any:
    return client.put("/documents", json={"documents": list(docs)})


def full_text(doc: dict) -> str:
    """What the encoders see of a written document (title and text joined, as `NewDoc.full_text`)."""
    return f"{doc.get('title', '')} {doc['text']}".strip()


def quoted(doc_id: str) -> str:
    return urllib.parse.quote(doc_id, safe="")


ZEBRA = {"id": "z1", "title": "zebra", "text": "giraffe savanna acacia", "metadata": {"bucket": 3, "lang": "sw"}}
OKAPI = {"id": "z2", "title": "okapi", "text": "rainforest congo stripes", "metadata": {"bucket": 4, "lang": "fr"}}


# --- configuration ----------------------------------------------------------------------------------------------------


def test_writes_need_an_api_key_and_refuse_mmap(dirs):
    sources = (PipelineSource("flat", dirs["flat"]),)
    with pytest.raises(ValueError, match="--writes needs an API key.*--api-key"):
        ServerConfig(pipelines=sources, writes=True)
    with pytest.raises(ValueError, match="--writes cannot be combined with --mmap"):
        ServerConfig(pipelines=sources, writes=True, mmap=True, security=Security(api_key=KEY))
    ServerConfig(pipelines=sources, mmap=True)  # either alone is fine


def test_a_directory_that_cannot_take_writes_stops_the_server_at_startup(index_dirs):
    """The conftest's compressed pipeline re-ranks with ,RFlat, which cannot remove vectors."""
    with pytest.raises(ValueError, match=r"RFlat.*rebuild it without ,RFlat"), serve(index_dirs):
        pass


def test_pipelines_over_different_corpora_refuse_writes_before_the_server_starts(dirs, tmp_path, write_beir):
    """`semsearch serve --writes` preloads: a refusal of the corpus writer is an error at startup (one line from
    the CLI), not a failed lifespan."""
    other = build_dirs(
        load_beir(write_beir(tmp_path / "other", n_docs_per_topic=5, seed=3)), tmp_path, {"o": ("Flat", 32)}
    )
    sources = (PipelineSource("flat", dirs["flat"]), PipelineSource("other", other["o"]))
    config = ServerConfig(pipelines=sources, writes=True, security=Security(api_key=KEY))
    with pytest.raises(ValueError, match="built on different corpora"):
        create_app(config, preload=True)


def test_with_writes_off_put_and_delete_are_403_and_documents_still_read(dirs, dataset):
    stored = dataset.corpus[7]
    with serve(dirs, writes=False) as client:
        refused = put(client, ZEBRA)
        assert refused.status_code == 403
        assert "--writes" in refused.json()["detail"]
        deleted = client.delete(f"/documents/{stored.id}")
        assert deleted.status_code == 403
        assert "--writes" in deleted.json()["detail"]
        off = status(client)
        assert off["writes"] is False
        assert "--writes" in off["detail"]

        doc = client.get(f"/documents/{stored.id}")
        assert doc.status_code == 200
        assert doc.json() == {
            "id": stored.id, "title": stored.title, "snippet": stored.text, "metadata": {}, "version": 0,
            "state": "live", "replaces_version": None,
        }  # fmt: skip
        assert client.get("/documents/no-such-doc").status_code == 404
        assert client.get(f"/documents/{ZEBRA['id']}").status_code == 404  # the refused PUT wrote nothing
        for name in dirs:  # the refused DELETE removed nothing
            assert search(client, stored.full_text(), 1, name)[0]["id"] == stored.id


def test_every_documents_route_needs_the_api_key(dirs):
    with serve(dirs, key=False) as client:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": KEY}):
            calls = {
                "PUT": lambda h: client.put("/documents", json={"documents": [ZEBRA]}, headers=h),
                "DELETE": lambda h: client.delete("/documents/flat-0", headers=h),
                "GET doc": lambda h: client.get(f"/documents/{ZEBRA['id']}", headers=h),
                "GET status": lambda h: client.get("/documents/status", headers=h),
            }
            for what, call in calls.items():
                response = call(headers)
                assert response.status_code == 401, (what, headers, response.text)
                assert "API key" in response.json()["detail"]
        assert client.get(f"/documents/{ZEBRA['id']}", headers=AUTH).status_code == 404
        versions = {p["version"] for p in client.get("/documents/status", headers=AUTH).json()["pipelines"].values()}
        assert versions == {0}


# --- writes -----------------------------------------------------------------------------------------------------------


def test_an_upsert_is_searchable_in_every_pipeline_at_one_version(dirs, dataset):
    with serve(dirs) as client:
        response = put(client, ZEBRA, OKAPI)
        assert response.status_code == 202, response.text
        assert response.json() == {"first_version": 1, "last_version": 2, "ids": ["z1", "z2"], "state": "encoding"}
        early = client.get("/documents/z1").json()
        assert early["state"] in ("encoding", "live")
        assert (early["title"], early["metadata"], early["version"]) == ("zebra", ZEBRA["metadata"], 1)

        pipelines = wait_encoded(client)["pipelines"]
        assert set(pipelines) == set(WRITABLE)
        for name, found in pipelines.items():
            assert (found["version"], found["documents"], found["index_ntotal"]) == (2, 62, 62), name
        doc = client.get("/documents/z1").json()
        assert doc == {
            "id": "z1", "title": "zebra", "snippet": "giraffe savanna acacia", "metadata": ZEBRA["metadata"],
            "version": 1, "state": "live", "replaces_version": None,
        }  # fmt: skip

        for name in WRITABLE:
            for written in (ZEBRA, OKAPI):
                top = search(client, full_text(written), 3, name)[0]
                assert (top["id"], top["title"]) == (written["id"], written["title"]), name
                assert top["score"] == pytest.approx(1.0, abs=1e-4)  # the query is the document's own text
            assert [h["id"] for h in search(client, "zebra", 5, name, filter={"bucket": 3})] == ["z1"], name
            assert [h["id"] for h in search(client, "zebra", 5, name, filter={"lang": {"in": ["fr"]}})] == ["z2"]
        untouched = dataset.corpus[0]  # the corpus is still there
        assert search(client, untouched.full_text(), 1, "hnsw")[0]["id"] == untouched.id


def test_an_upsert_of_an_existing_id_replaces_it(dirs, dataset):
    old = next(doc for doc in dataset.corpus if doc.id == "heart-3")
    new = {"id": "heart-3", "title": "rewritten", "text": "zebra giraffe savanna", "metadata": {"bucket": 9}}
    with serve(dirs) as client:
        assert put(client, new).status_code == 202
        pipelines = wait_encoded(client)["pipelines"]
        for name, found in pipelines.items():
            assert (found["version"], found["documents"], found["tombstones"]) == (1, 60, 1), name
        doc = client.get("/documents/heart-3").json()
        assert (doc["title"], doc["snippet"], doc["metadata"], doc["version"]) == (
            "rewritten", "zebra giraffe savanna", {"bucket": 9}, 1
        )  # fmt: skip
        for name in WRITABLE:
            top = search(client, full_text(new), 3, name)[0]
            assert (top["id"], top["title"]) == ("heart-3", "rewritten"), name
            # searched by the old text (the whole corpus, but for IVF's unprobed lists): only as its new self
            every = search(client, old.full_text(), 60, name)
            assert len(every) == 60 or name == "ivf", name
            assert [h["title"] for h in every if h["id"] == "heart-3"] == ["rewritten"], name
            assert not any(h["title"] == old.title for h in every), name
            assert [h["id"] for h in search(client, "heart", 5, name, filter={"bucket": 9})] == ["heart-3"]
        assert put(client, {**new, "metadata": {"bucket": 10}}).status_code == 202  # the metadata alone changes
        wait_encoded(client)
        for name in WRITABLE:
            assert search(client, "heart", 5, name, filter={"bucket": 9}) == [], name
            assert [h["id"] for h in search(client, "heart", 5, name, filter={"bucket": 10})] == ["heart-3"], name


def test_a_delete_leaves_every_pipelines_results_at_once(dirs, dataset):
    gone = next(doc for doc in dataset.corpus if doc.id == "cancer-5")
    with serve(dirs) as client:
        assert put(client, ZEBRA).status_code == 202
        wait_encoded(client)
        for doc_id, text, version in ((gone.id, gone.full_text(), 2), ("z1", full_text(ZEBRA), 3)):
            response = client.delete(f"/documents/{doc_id}")
            assert response.status_code == 200, response.text
            assert response.json() == {"id": doc_id, "version": version, "deleted": True, "was_encoding": False}
            # no waiting: a delete needs no encoding
            for name in WRITABLE:
                every = search(client, text, 70, name)  # its own text: IVF probes its list
                assert doc_id not in {h["id"] for h in every}, name
            compared = client.post("/compare", json={"query": text, "k": 70}).json()["pipelines"]
            assert set(compared) == set(WRITABLE)
            for name, found in compared.items():
                assert doc_id not in {h["id"] for h in found["hits"]}, name
            assert client.get(f"/documents/{doc_id}").status_code == 404
        for name, found in status(client)["pipelines"].items():
            assert (found["documents"], found["version"]) == (59, 3), name
            assert search(client, "zebra", 5, name, filter={"bucket": 3}) == [], name
        assert len(search(client, "cancer", 70, "flat")) == 59
        again = client.delete(f"/documents/{gone.id}")
        assert again.status_code == 404
        assert gone.id in again.json()["detail"]


def test_a_delete_of_an_unknown_id_is_404_and_changes_nothing(dirs):
    with serve(dirs) as client:
        before = snapshot(client)
        response = client.delete("/documents/no-such-doc")
        assert response.status_code == 404
        assert "no-such-doc" in response.json()["detail"]
        assert snapshot(client) == before  # a refused write takes no version


@pytest.fixture
def held_encoder(monkeypatch) -> Iterator[threading.Event]:
    """Document encoding (kind "passage") waits until the returned event is set; queries encode as before."""
    gate = threading.Event()
    encode = FakeEncoder.encode

    def held(self, texts, kind="query", batch_size=32):
        if kind == "passage":
            assert gate.wait(WAIT_S), "the test never released the document encoder"
        return encode(self, texts, kind, batch_size)

    monkeypatch.setattr(FakeEncoder, "encode", held)
    try:
        yield gate
    finally:
        gate.set()


def test_while_encoding_searches_serve_the_previous_state_and_a_full_queue_is_503(dirs, dataset, held_encoder):
    old = next(doc for doc in dataset.corpus if doc.id == "brain-4")
    new = {"id": "brain-4", "title": "rewritten", "text": "zebra giraffe savanna"}
    with serve(dirs, limits=ServerLimits(max_pending=4)) as client:
        assert put(client, new, ZEBRA, OKAPI).status_code == 202
        deadline = time.monotonic() + WAIT_S
        while status(client)["in_flight"] != 3:  # the worker holds the batch, its encoder waits
            assert time.monotonic() < deadline
            time.sleep(0.01)

        doc = client.get("/documents/brain-4").json()
        assert (doc["state"], doc["title"], doc["version"], doc["replaces_version"]) == ("encoding", "rewritten", 1, 0)
        assert client.get("/documents/z1").json()["state"] == "encoding"
        for name in WRITABLE:
            top = search(client, old.full_text(), 1, name)[0]
            assert (top["id"], top["title"]) == ("brain-4", old.title), name  # the previous state
            assert "z1" not in {h["id"] for h in search(client, full_text(ZEBRA), 70, name)}

        before = snapshot(client)
        full = put(client, {"id": "x1", "text": "one more"}, {"id": "x2", "text": "two more"})
        assert full.status_code == 503
        assert full.headers["retry-after"] == "1"
        assert "max_pending=4" in full.json()["detail"]
        assert snapshot(client) == before
        assert client.get("/documents/x1").status_code == 404

        dropped = client.delete("/documents/z2")  # still encoding: dropped from the queue
        assert dropped.status_code == 200
        assert dropped.json()["was_encoding"] is True

        held_encoder.set()
        pipelines = wait_encoded(client)["pipelines"]
        for name, found in pipelines.items():
            assert (found["documents"], found["version"]) == (61, 4), name  # brain-4 replaced, z1 added, z2 not
        assert client.get("/documents/z2").status_code == 404
        assert client.get("/documents/brain-4").json()["state"] == "live"
        for name in WRITABLE:
            assert "z2" not in {h["id"] for h in search(client, full_text(OKAPI), 70, name)}
            top = search(client, full_text(new), 1, name)[0]
            assert (top["id"], top["title"]) == ("brain-4", "rewritten"), name
        assert put(client, {"id": "x1", "text": "one more"}, {"id": "x2", "text": "two more"}).status_code == 202


def test_search_and_compare_say_which_documents_are_still_being_encoded(dirs, held_encoder):
    with serve(dirs) as client:
        assert search(client, "zebra", 3) and client.post("/search", json={"query": "zebra"}).json()["encoding"] == {
            "documents": 0, "ids": []
        }  # fmt: skip
        assert put(client, ZEBRA, OKAPI).status_code == 202
        answer = client.post("/search", json={"query": "zebra giraffe", "k": 3}).json()
        assert answer["encoding"] == {"documents": 2, "ids": ["z1", "z2"]}
        assert "z1" not in {hit["id"] for hit in answer["hits"]}
        compared = client.post("/compare", json={"query": "zebra giraffe", "k": 3}).json()
        assert compared["encoding"] == {"documents": 2, "ids": ["z1", "z2"]}
        held_encoder.set()
        wait_encoded(client)
        answer = client.post("/search", json={"query": full_text(ZEBRA), "k": 3, "pipeline": "flat"}).json()
        assert answer["encoding"] == {"documents": 0, "ids": []}
        assert answer["hits"][0]["id"] == "z1"
    with serve(dirs, writes=False) as client:
        assert client.post("/search", json={"query": "zebra"}).json()["encoding"] is None


def rewrite_everything(client: TestClient, dataset: Dataset) -> dict[str, dict]:
    """Replace all 60 documents, then 10 of them again: 70 positions hidden in Flat and HNSW (>= 64 and >= 10% of
    the index), which the worker compacts; wait for both compactions. Returns the latest document of each id."""
    rewritten = {doc.id: f"rewritten {i} walrus narwhal" for i, doc in enumerate(dataset.corpus)}
    first = [{"id": i, "title": "first", "text": t} for i, t in rewritten.items()]
    again = [{"id": i, "title": "second", "text": f"{t} beluga"} for i, t in list(rewritten.items())[:10]]
    assert put(client, *first).status_code == 202
    wait_encoded(client)  # else the second batch would replace the first's pending upserts
    assert put(client, *again).status_code == 202
    wait_encoded(client)
    deadline = time.monotonic() + WAIT_S  # the worker compacts after applying the batch
    while any(status(client)["pipelines"][name]["compactions"] == 0 for name in ("flat", "hnsw")):
        assert time.monotonic() < deadline, f"no compaction after {WAIT_S} s: {status(client)}"
        time.sleep(0.02)
    return {**{d["id"]: d for d in first}, **{d["id"]: d for d in again}}


def assert_serves(client: TestClient, latest: dict[str, dict]) -> None:
    """Every pipeline finds a sample of the documents by their own text, as their latest version; the exact one
    holds exactly the latest 60."""
    for name in WRITABLE:
        for doc in list(latest.values())[::7]:
            top = search(client, full_text(doc), 1, name)[0]
            assert (top["id"], top["title"]) == (doc["id"], doc["title"]), name
    every = search(client, "walrus", 70, "flat")
    assert {(h["id"], h["title"]) for h in every} == {(d["id"], d["title"]) for d in latest.values()}
    doc = client.get("/documents/heart-3").json()
    assert (doc["state"], doc["title"], doc["snippet"]) == ("live", "first", latest["heart-3"]["text"])


def test_compaction_keeps_every_pipeline_serving_the_latest_documents(dirs, dataset):
    with serve(dirs) as client:
        latest = rewrite_everything(client, dataset)
        pipelines = status(client)["pipelines"]
        for name in ("flat", "hnsw"):
            found = pipelines[name]
            assert (found["compactions"], found["hidden"], found["generation"]) == (1, 0, 1), name
            assert (found["documents"], found["index_ntotal"], found["version"]) == (60, 60, 70), name
        assert pipelines["ivf"]["removes_in_place"] is True
        assert (pipelines["ivf"]["documents"], pipelines["ivf"]["index_ntotal"]) == (60, 60)
        assert_serves(client, latest)


def test_a_restart_replays_the_writes(dirs, dataset):
    gone = dataset.corpus[3]
    with serve(dirs) as client:
        assert put(client, ZEBRA, {**OKAPI, "id": "heart-3"}).status_code == 202
        wait_encoded(client)
        assert client.delete(f"/documents/{gone.id}").status_code == 200
    with serve(dirs, writes=False) as client:
        for name in WRITABLE:
            for doc in (ZEBRA, {**OKAPI, "id": "heart-3"}):
                top = search(client, full_text(doc), 1, name)[0]
                assert (top["id"], top["title"]) == (doc["id"], doc["title"]), name
            assert gone.id not in {h["id"] for h in search(client, gone.full_text(), 70, name)}, name
        assert client.get(f"/documents/{gone.id}").status_code == 404
        assert client.get("/documents/z1").json()["state"] == "live"
        assert len(search(client, "heart", 70, "flat")) == 60


def test_a_restart_after_a_compaction_serves_the_compacted_directories(dirs, dataset):
    with serve(dirs) as client:
        latest = rewrite_everything(client, dataset)
    with serve(dirs, writes=False) as client:
        assert_serves(client, latest)
    with serve(dirs) as client:  # and takes writes again
        assert_serves(client, latest)


@pytest.mark.parametrize("doc_id", ["with space?#&=", "ünïcode-ид", "a/b", "status"])
def test_an_id_put_accepts_can_be_read_and_deleted(dirs, doc_id):
    """An id PUT /documents accepts must be reachable at /documents/{its percent-encoded form} (or be refused by PUT
    with a 422 naming it)."""
    with serve(dirs) as client:
        response = put(client, {"id": doc_id, "title": "odd", "text": "zebra giraffe savanna"})
        if response.status_code == 422:
            assert "id" in json.dumps(response.json()["detail"])
            return
        assert response.status_code == 202, response.text
        wait_encoded(client)
        found = client.get(f"/documents/{quoted(doc_id)}")
        assert found.status_code == 200, found.text
        assert (found.json().get("id"), found.json().get("title")) == (doc_id, "odd"), found.json()
        deleted = client.delete(f"/documents/{quoted(doc_id)}")
        assert deleted.status_code == 200, deleted.text
        assert doc_id not in {h["id"] for h in search(client, "zebra giraffe savanna", 70, "flat")}


# --- hostile writes ---------------------------------------------------------------------------------------------------

HOSTILE_LIMITS = ServerLimits(max_write_docs=5, max_doc_chars=200, max_body_bytes=4096)
GOOD = {"id": "good-1", "title": "fine", "text": "a perfectly good document"}


def body(*docs: dict, **extra) -> bytes:
    return json.dumps({"documents": list(docs), **extra}).encode()


def raw_doc(metadata: str) -> bytes:
    """A batch whose second document carries `metadata` written by hand (what json.dumps would not write)."""
    return b'{"documents": [%s, {"id": "raw-1", "text": "x", "metadata": %s}]}' % (
        json.dumps(GOOD).encode(),
        metadata.encode(),
    )


# name: (body, content type, status, the loc of the first error (None: not a validation error), text it names)
HOSTILE: dict[str, tuple[bytes, str, int, list | None, str]] = {
    "more than max_write_docs": (
        body(*[{"id": f"many-{i}", "text": "t"} for i in range(6)]), "application/json", 422,
        ["body", "documents"], "at most 5",
    ),
    "body over max_body_bytes": (
        body(*[{"id": f"big-{i}", "text": "t", "metadata": {"pad": "p" * 1000}} for i in range(5)]),
        "application/json", 413, None, "max_body_bytes",
    ),
    "duplicate ids": (
        body(GOOD, {"id": "dup-1", "text": "a"}, {"id": "dup-1", "text": "b"}), "application/json", 422,
        ["body", "documents"], "duplicate document ids in one batch: ['dup-1']",
    ),
    "nested metadata": (
        body(GOOD, {"id": "m-1", "text": "a", "metadata": {"author": {"name": "x"}}}), "application/json", 422,
        ["body", "documents", 1, "metadata"], "metadata['author'] is dict",
    ),
    "list metadata": (
        body(GOOD, {"id": "m-1", "text": "a", "metadata": {"tags": ["a", "b"]}}), "application/json", 422,
        ["body", "documents", 1, "metadata"], "metadata['tags'] is list",
    ),
    "null metadata value": (
        body(GOOD, {"id": "m-1", "text": "a", "metadata": {"year": None}}), "application/json", 422,
        ["body", "documents", 1, "metadata"], "metadata['year'] is null",
    ),
    "metadata not an object": (
        body(GOOD, {"id": "m-1", "text": "a", "metadata": [1, 2]}), "application/json", 422,
        ["body", "documents", 1, "metadata"], "dictionary",
    ),
    "NaN metadata": (raw_doc('{"score": NaN}'), "application/json", 422,
                     ["body", "documents", 1, "metadata"], "metadata['score']: nan is not a finite number"),
    "Infinity metadata": (raw_doc('{"score": -Infinity}'), "application/json", 422,
                          ["body", "documents", 1, "metadata"], "metadata['score']: -inf is not a finite number"),
    "1e400 metadata": (raw_doc('{"score": 1e400}'), "application/json", 422,
                       ["body", "documents", 1, "metadata"], "metadata['score']: inf is not a finite number"),
    "integer over 64 bits": (raw_doc('{"big": 18446744073709551616}'), "application/json", 422,
                             ["body", "documents", 1, "metadata"], "metadata['big']: integer"),
    "too many metadata keys": (
        body(GOOD, {"id": "m-1", "text": "a", "metadata": {f"k{i}": i for i in range(65)}}), "application/json",
        422, ["body", "documents", 1, "metadata"], "at most 64 keys, got 65",
    ),
    "metadata key starting with $": (
        body(GOOD, {"id": "m-1", "text": "a", "metadata": {"$where": 1}}), "application/json", 422,
        ["body", "documents", 1, "metadata"], "'$where'",
    ),
    "empty id": (
        body(GOOD, {"id": "", "text": "a"}), "application/json", 422, ["body", "documents", 1, "id"],
        "at least 1 character",
    ),
    "blank id": (
        body(GOOD, {"id": " \u200b\t", "text": "a"}), "application/json", 422, ["body", "documents", 1, "id"],
        "visible character",
    ),
    "id over 512 characters": (
        body(GOOD, {"id": "i" * 513, "text": "a"}), "application/json", 422, ["body", "documents", 1, "id"], "512",
    ),
    "empty text": (
        body(GOOD, {"id": "t-1", "text": ""}), "application/json", 422, ["body", "documents", 1, "text"], "visible",
    ),
    "blank text": (
        body(GOOD, {"id": "t-1", "text": "\u200b \ufeff"}), "application/json", 422,
        ["body", "documents", 1, "text"], "visible character",
    ),
    "missing text": (
        body(GOOD, {"id": "t-1", "title": "only a title"}), "application/json", 422,
        ["body", "documents", 1, "text"], "required",
    ),
    "text over max_doc_chars": (
        body(GOOD, {"id": "t-1", "text": "w" * 201}), "application/json", 422, ["body", "documents", 1, "text"],
        "at most 200 characters",
    ),
    "title over max_doc_chars": (
        body(GOOD, {"id": "t-1", "title": "w" * 201, "text": "a"}), "application/json", 422,
        ["body", "documents", 1, "title"], "at most 200 characters",
    ),
    "lone surrogate in text": (
        b'{"documents": [{"id": "s-1", "text": "bad \\ud800 text"}]}', "application/json", 422,
        ["body", "documents", 0, "text"], "not valid Unicode",
    ),
    "a number as text": (
        body(GOOD, {"id": "t-1", "text": 5}), "application/json", 422, ["body", "documents", 1, "text"], "string",
    ),
    "unknown field in a document": (
        body(GOOD, {"id": "f-1", "text": "a", "body": "b"}), "application/json", 422,
        ["body", "documents", 1, "body"], "Extra inputs are not permitted",
    ),
    "unknown top-level field": (
        body(GOOD, upsert=True), "application/json", 422, ["body", "upsert"], "Extra inputs are not permitted",
    ),
    "no documents": (body(), "application/json", 422, ["body", "documents"], "at least 1"),
    "not JSON": (b'{"documents": [', "application/json", 422, ["body", 15], "JSON"),
    "wrong content type": (body(GOOD), "text/plain", 415, None, "Content-Type: application/json"),
    "form content type": (b"documents=good-1", "application/x-www-form-urlencoded", 415, None, "application/json"),
}  # fmt: skip


@pytest.fixture(scope="module")
def guarded(corpus, tmp_path_factory) -> Iterator[TestClient]:
    """One server with small write limits for every hostile write (none of them may change it)."""
    with serve(copies(corpus[1], tmp_path_factory.mktemp("guarded")), limits=HOSTILE_LIMITS) as client:
        yield client


def batch_ids(raw: bytes) -> list[str]:
    try:
        docs = json.loads(raw)["documents"]
    except (ValueError, KeyError, TypeError):
        return []
    return [d["id"] for d in docs if isinstance(d.get("id"), str) and d["id"]]


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_write_is_a_clear_4xx_and_changes_nothing(guarded, case):
    raw, content_type, expected, loc, named = HOSTILE[case]
    before = snapshot(guarded)
    response = guarded.put("/documents", content=raw, headers={"content-type": content_type})
    assert response.status_code == expected, response.text
    detail = response.json()["detail"]
    if loc is None:
        assert named in detail
    else:
        assert detail[0]["loc"] == loc, detail
        assert named in detail[0]["msg"], detail
        assert all(set(item) == {"type", "loc", "msg"} for item in detail)
    assert snapshot(guarded) == before
    assert snapshot(guarded) == {name: (0, 60, 0, 60) for name in WRITABLE}
    for doc_id in [*batch_ids(raw), GOOD["id"]]:
        assert guarded.get(f"/documents/{quoted(doc_id)}").status_code == 404, doc_id


def test_the_hostile_server_takes_a_batch_at_its_limits(corpus, tmp_path):
    """The limits refuse only what passes them: 5 documents of 200 characters are written."""
    docs = [{"id": f"edge-{i}", "title": "t" * 200, "text": f"edge{i} " + "w" * 194} for i in range(5)]
    with serve(copies(corpus[1], tmp_path), limits=HOSTILE_LIMITS) as client:
        assert put(client, *docs).status_code == 202
        for name, found in wait_encoded(client)["pipelines"].items():
            assert (found["documents"], found["version"]) == (65, 5), name


# --- filters ----------------------------------------------------------------------------------------------------------

LANGS = ("en", "de", "fr", "es", "it", "nl", "pt")


def meta_of(i: int) -> dict[str, Any]:
    return {
        "bucket": i % 4,
        "year": 1990 + i % 30,
        "lang": LANGS[i % 7],
        "score": (i % 10) / 10,
        "reviewed": i % 2 == 0,
    }


@pytest.fixture(scope="module")
def filtered(tmp_path_factory, write_beir) -> Iterator[tuple[TestClient, list[dict], np.ndarray]]:
    """2500 documents with metadata (`meta_of` their line), a Flat index keeping fp32 vectors (exact) and an HNSW16
    one (approximate, fp16 vectors), served without writes; with every document's metadata and fake vector."""
    root = tmp_path_factory.mktemp("filtered")
    beir = write_beir(root / "beir", n_docs_per_topic=500)
    lines = (beir / "corpus.jsonl").read_text().splitlines()
    records = [{**json.loads(line), "metadata": meta_of(i)} for i, line in enumerate(lines)]
    (beir / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    dataset = load_beir(beir)
    dirs = build_dirs(dataset, root, {"flat": ("Flat", 32)}, vectors="fp32")
    dirs |= build_dirs(dataset, root, {"hnsw": ("HNSW16", 32)})
    vectors = FakeEncoder(dim=32).encode([doc.full_text() for doc in dataset.corpus], kind="passage")
    docs = [{"id": doc.id, **record["metadata"]} for doc, record in zip(dataset.corpus, records, strict=True)]
    with serve(dirs, writes=False) as client:
        yield client, docs, vectors


Predicate = Callable[[dict], bool]
FILTERS: dict[str, tuple[dict, Predicate]] = {
    "equality": ({"bucket": 2}, lambda d: d["bucket"] == 2),
    "eq spelled out": ({"lang": {"eq": "de"}}, lambda d: d["lang"] == "de"),
    "in": ({"lang": {"in": ["fr", "pt"]}}, lambda d: d["lang"] in ("fr", "pt")),
    "boolean": ({"reviewed": False}, lambda d: d["reviewed"] is False),
    "float range": ({"score": {"gt": 0.45, "lte": 0.8}}, lambda d: 0.45 < d["score"] <= 0.8),
    "integer range": ({"year": {"gte": 2000, "lt": 2005}}, lambda d: 2000 <= d["year"] < 2005),
    "wide range (searched with a selector)": ({"year": {"gte": 1992}}, lambda d: d["year"] >= 1992),
    "all conditions": (
        {"bucket": 1, "year": {"lte": 1991}, "lang": {"in": ["de", "en"]}},
        lambda d: d["bucket"] == 1 and d["year"] <= 1991 and d["lang"] in ("de", "en"),
    ),
    "fewer matches than k": (
        {"bucket": 1, "year": 1991, "lang": "de"}, lambda d: (d["bucket"], d["year"], d["lang"]) == (1, 1991, "de"),
    ),
}  # fmt: skip
QUERIES = ("cancerkey tumor", "heart failure blood pressure", "neurons memory note7")


def exact_filtered(docs: list[dict], vectors: np.ndarray, query: str, keep: Predicate) -> np.ndarray:
    """Every document's exact score for `query`; -inf for those the filter leaves out."""
    scores = vectors @ FakeEncoder(dim=32).encode([query], kind="query")[0]
    return np.where([keep(d) for d in docs], scores, -np.inf)


@pytest.mark.parametrize("case", list(FILTERS))
def test_a_filtered_search_is_the_exact_filtered_top_k(filtered, case, assert_same_top_k):
    client, docs, vectors = filtered
    where, keep = FILTERS[case]
    matching = sum(map(keep, docs))
    row = {d["id"]: i for i, d in enumerate(docs)}
    k = 10
    for query in QUERIES:
        exact = exact_filtered(docs, vectors, query, keep)
        for name in ("flat", "hnsw"):
            hits = search(client, query, k, name, filter=where)
            assert len(hits) == min(k, matching), (name, query)
            assert all(keep(docs[row[h["id"]]]) for h in hits), (name, query)
            found = np.array([[row[h["id"]] for h in hits]])
            scores = np.array([[h["score"] for h in hits]])
            if name == "flat" and matching < k:  # every matching document
                assert set(found[0]) == set(np.flatnonzero(np.isfinite(exact)))
                np.testing.assert_allclose(scores[0], exact[found[0]], atol=1e-5)
            elif name == "flat":
                assert_same_top_k(found, scores, exact[None, :])
            else:  # approximate: real scores of matching documents (fp16 rows), in order
                np.testing.assert_allclose(scores[0], exact[found[0]], atol=3e-3)
                assert all(np.diff(scores[0]) <= 1e-6)


@pytest.mark.parametrize(
    "where", [{"bucket": "2"}, {"reviewed": 1}, {"bucket": True}, {"no_such_key": 1}, {"year": {"gt": 3000}}]
)
def test_a_filter_matching_nothing_is_200_with_no_hits(filtered, where):
    """Types are kept apart: "2" is not 2, 1 is not true."""
    client = filtered[0]
    for name in ("flat", "hnsw"):
        assert search(client, "heart", 10, name, filter=where) == []
    compared = client.post("/compare", json={"query": "heart", "k": 10, "filter": where})
    assert compared.status_code == 200
    assert all(p["hits"] == [] for p in compared.json()["pipelines"].values())


def test_compare_with_a_filter_filters_every_pipeline(filtered, assert_same_top_k):
    client, docs, vectors = filtered
    row = {d["id"]: i for i, d in enumerate(docs)}
    for case in ("in", "wide range (searched with a selector)"):
        where, keep = FILTERS[case]
        response = client.post("/compare", json={"query": QUERIES[1], "k": 10, "filter": where})
        assert response.status_code == 200, response.text
        pipelines = response.json()["pipelines"]
        assert set(pipelines) == {"flat", "hnsw"}
        for name, found in pipelines.items():
            assert len(found["hits"]) == 10, name
            assert all(keep(docs[row[h["id"]]]) for h in found["hits"]), name
        flat = pipelines["flat"]["hits"]
        assert_same_top_k(
            np.array([[row[h["id"]] for h in flat]]),
            np.array([[h["score"] for h in flat]]),
            exact_filtered(docs, vectors, QUERIES[1], keep)[None, :],
        )


BAD_FILTERS = {
    "unknown operator": ({"year": {"between": [1990, 2000]}}, "unknown operator 'between'"),
    "range on a string": ({"lang": {"gt": "en"}}, "filter['lang']['gt'] needs a finite number"),
    "a list": ([{"bucket": 1}], "dictionary"),
    "a string": ('{"bucket": 1}', "dictionary"),
    "empty condition": ({"bucket": {}}, "filter['bucket'] is an empty object"),
    "null value": ({"bucket": None}, "filter['bucket'] is null"),
    "empty in": ({"lang": {"in": []}}, "filter['lang']['in'] needs a list"),
    "nested value": ({"lang": {"eq": {"x": 1}}}, "filter['lang']['eq'] is dict"),
    "key starting with $": ({"$or": 1}, "'$or'"),
}


@pytest.mark.parametrize("route", ["/search", "/compare"])
@pytest.mark.parametrize("case", list(BAD_FILTERS))
def test_a_bad_filter_is_422_at_body_filter(filtered, route, case):
    where, named = BAD_FILTERS[case]
    response = filtered[0].post(route, json={"query": "heart", "k": 3, "filter": where})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["body", "filter"]
    assert named in detail[0]["msg"]


def test_a_nan_in_a_filter_is_422(filtered):
    raw = b'{"query": "heart", "k": 3, "filter": {"score": {"gt": NaN}}}'
    response = filtered[0].post("/search", content=raw, headers=JSON)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "filter"]


def test_search_batch_does_not_ignore_a_filter(filtered):
    """/search/batch takes no filter: one sent must be refused (422 naming it), never dropped silently to answer
    documents that do not match it."""
    client, docs, _ = filtered
    where, keep = FILTERS["equality"]
    response = client.post("/search/batch", json={"queries": list(QUERIES), "k": 5, "filter": where})
    if response.status_code == 422:
        assert "filter" in json.dumps(response.json()["detail"])
        return
    assert response.status_code == 200, response.text
    by_id = {d["id"]: d for d in docs}
    for result in response.json()["results"]:
        assert all(keep(by_id[h["id"]]) for h in result["hits"]), "the filter was ignored"
