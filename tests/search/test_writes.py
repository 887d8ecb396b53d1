"""Writes to the corpus of several pipelines (`search.writes.CorpusWriter`): every store takes every write under the
same versions, drained upserts and deletes make every pipeline equal exact search over the resulting corpus, and a
store left behind is rolled forward (or refused when it took other writes)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from compression.encoders import FakeEncoder
from indexes.docstore import DOCS_DB
from indexes.exact import exact_search
from indexes.faiss_index import IndexSpec
from indexes.live import NotWritableError
from indexes.livestore import LiveStore, NewDoc
from search.data.datasets import load_beir
from search.pipeline import Pipeline, build_index_dir
from search.writes import CorpusWriter
from semsearch_common.threads import limit_threads

DIM = 32
K = 5


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with limit_threads(1):
        yield


@pytest.fixture
def built(tmp_path: Path, beir_dir: Path):
    """Two exact pipelines' directories on the tiny dataset (Flat; IVF4,Flat probing every list), and the truth: the
    corpus as id -> the text the encoder sees."""
    dataset = load_beir(beir_dir)
    dirs = {"flat": tmp_path / "flat", "ivf": tmp_path / "ivf"}
    build_index_dir(dataset, FakeEncoder(dim=DIM), IndexSpec("Flat"), dirs["flat"], show_progress=False)
    spec = IndexSpec("IVF4,Flat", search_params={"nprobe": 4})
    build_index_dir(dataset, FakeEncoder(dim=DIM), spec, dirs["ivf"], show_progress=False)
    return dirs, {doc.id: doc.full_text() for doc in dataset.corpus}


@pytest.fixture
def open_writer(built):
    """`open_writer(**kwargs)`: a CorpusWriter over freshly loaded pipelines of both directories."""
    dirs, _ = built
    writers: list[CorpusWriter] = []
    pipelines: list[Pipeline] = []

    def make(**kwargs) -> CorpusWriter:
        loaded = {name: Pipeline.load(path) for name, path in dirs.items()}
        pipelines.extend(loaded.values())
        writer = CorpusWriter(loaded, **kwargs)
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        writer.close()
    for pipeline in pipelines:  # a writer that refused to start leaves its pipelines open for writes
        if pipeline.live is not None:
            pipeline.live.close()


def _doc(doc_id: str, text: str, title: str = "added") -> NewDoc:
    return NewDoc(doc_id, title, text, {"source": "test"})


def _check_exact(writer: CorpusWriter, truth: dict[str, str], queries: list[str], assert_same_ranking) -> None:
    """Every pipeline's top-k for `queries` equals exact search over `truth` (id -> encoded text)."""
    encoder = FakeEncoder(dim=DIM)
    ids = sorted(truth)
    matrix = encoder.encode([truth[i] for i in ids], kind="passage")
    scores, rows = exact_search(encoder.encode(queries), matrix, K)
    for name, pipeline in writer.pipelines.items():
        hits = pipeline.search_batch(queries, K).hits
        for q, row_hits in enumerate(hits):
            want = [ids[j] for j in rows[q]]
            assert_same_ranking([h.id for h in row_hits], [h.score for h in row_hits], want, scores[q].tolist(), 1e-4)
        for doc_id in {h.id for row in hits for h in row}:
            assert doc_id in truth, f"{name} returned {doc_id}, which is not live"


def _first_hit(pipeline: Pipeline, text: str) -> str:
    return pipeline.search(text, k=K).hits[0].id


NEW = [
    _doc("new-a", "zebra quokka narwhal axolotl"),
    _doc("new-b", "lighthouse harbour ferry tide"),
    _doc("new-c", "violin cello sonata orchestra"),
]
QUERIES = ["vitaminkey", "cardiac artery pressure", "viral vaccine", "zebra narwhal", "harbour tide", "sonata"]


def test_upserts_take_the_same_versions_in_every_store(open_writer):
    writer = open_writer()
    assert writer.upsert(NEW[:2]) == {"first_version": 1, "last_version": 2, "ids": ["new-a", "new-b"],
                                      "state": "encoding"}  # fmt: skip
    writer.delete(["vitamin-0"])
    assert writer.upsert([NEW[2]])["first_version"] == 4
    for name, store in writer.stores.items():
        assert store.version == 4, name
        assert [(p.doc.id, p.version) for p in store.pending()] == [("new-a", 1), ("new-b", 2), ("new-c", 4)]
        assert store.get("new-b")["state"] == "encoding" and store.get("vitamin-0") is None
    counts = [store.counts() for store in writer.stores.values()]
    assert counts[0] == counts[1] and counts[0]["pending"] == 3 and counts[0]["documents"] == 59
    assert writer.get("new-c")["version"] == 4


def test_refused_batches_log_nothing_anywhere(open_writer):
    writer = open_writer()
    with pytest.raises(ValueError, match="duplicate document ids in one batch"):
        writer.upsert([NEW[0], _doc("new-a", "again")])
    with pytest.raises(ValueError, match="no documents to upsert"):
        writer.upsert([])
    with pytest.raises(ValueError, match="no document ids to delete"):
        writer.delete([])
    for store in writer.stores.values():
        assert store.version == 0 and store.pending_count() == 0


def test_drained_upserts_make_every_pipeline_equal_exact_search_over_the_new_corpus(
    open_writer, built, assert_same_ranking
):
    _, truth = built
    writer = open_writer()
    replaced = _doc("heart-3", "penguin glacier iceberg", title="heart study 3 revised")
    writer.upsert([*NEW, replaced])
    assert writer.drain() == 4
    truth = {**truth, **{d.id: d.full_text() for d in [*NEW, replaced]}}
    for name, pipeline in writer.pipelines.items():
        for doc in [*NEW, replaced]:
            assert _first_hit(pipeline, doc.text) == doc.id, name
        store = writer.stores[name]
        assert store.get("heart-3")["state"] == "live" and store.get("heart-3")["snippet"] == replaced.text
        assert store.pending_count() == 0 and len(store) == 63
    _check_exact(writer, truth, [*QUERIES, "penguin glacier"], assert_same_ranking)


def test_deletes_leave_every_pipeline(open_writer, built, assert_same_ranking):
    _, truth = built
    writer = open_writer()
    writer.upsert(NEW)
    writer.drain()
    deleted = writer.delete(["new-a", "vitamin-0", "unknown"])
    assert [(d.id, d.pos is not None, d.was_pending) for d in deleted] == [
        ("new-a", True, False), ("vitamin-0", True, False), ("unknown", False, False)]  # fmt: skip
    truth = {**{k: v for k, v in truth.items() if k != "vitamin-0"}, **{d.id: d.full_text() for d in NEW[1:]}}
    for name, pipeline in writer.pipelines.items():
        assert writer.stores[name].get("new-a") is None and writer.stores[name].get("vitamin-0") is None
        assert "new-a" not in {h.id for h in pipeline.search("zebra quokka narwhal axolotl", k=K).hits}, name
    _check_exact(writer, truth, QUERIES, assert_same_ranking)


def test_an_upsert_deleted_before_encoding_never_appears(open_writer, built, assert_same_ranking):
    _, truth = built
    writer = open_writer()
    writer.upsert([NEW[0]])
    assert [(d.pos, d.was_pending) for d in writer.delete(["new-a"])] == [(None, True)]
    assert writer.drain() == 0
    for name, pipeline in writer.pipelines.items():
        assert writer.stores[name].get("new-a") is None
        assert "new-a" not in {h.id for h in pipeline.search(NEW[0].text, k=K).hits}
    _check_exact(writer, truth, QUERIES, assert_same_ranking)


def test_an_id_upserted_twice_before_encoding_ends_with_the_second_text(open_writer, built, assert_same_ranking):
    _, truth = built
    writer = open_writer()
    first, second = _doc("twice", "zebra quokka narwhal axolotl"), _doc("twice", "violin cello sonata orchestra")
    writer.upsert([first])
    writer.upsert([second])
    assert writer.drain() == 1
    for name, pipeline in writer.pipelines.items():
        doc = writer.stores[name].get("twice")
        assert (doc["state"], doc["snippet"], doc["version"]) == ("live", second.text, 2)
        assert _first_hit(pipeline, second.text) == "twice"
    _check_exact(writer, {**truth, "twice": second.full_text()}, [first.text, second.text, *QUERIES],
                 assert_same_ranking)  # fmt: skip


def test_the_background_worker_drains_and_reports_its_throughput(open_writer, built, assert_same_ranking):
    _, truth = built
    writer = open_writer(batch_size=8)
    writer.start()
    docs = [_doc(f"bg-{i}", f"background word{i} tide ferry") for i in range(20)]
    writer.upsert(docs)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = writer.status()
        if status["pending"] == 0 and status["in_flight"] == 0 and writer.get("bg-19")["state"] == "live":
            break
        time.sleep(0.05)
    status = writer.status()
    assert status["pending"] == 0 and status["worker"] == "running", status
    throughput = status["throughput"]
    assert throughput["documents"] == 20 and throughput["batches"] >= 3 and throughput["last_error"] is None
    assert throughput["documents_per_second"] > 0
    for name, info in status["pipelines"].items():
        assert info["documents"] == 80 and info["pending"] == 0 and info["next_pos"] == 80, name
    truth = {**truth, **{d.id: d.full_text() for d in docs}}
    _check_exact(writer, truth, ["background word7", "ferry tide", *QUERIES], assert_same_ranking)
    writer.stop()
    assert writer.status()["worker"] == "stopped"


def test_reconcile_rolls_a_store_left_behind_forward(open_writer, built, assert_same_ranking):
    dirs, truth = built
    writer = open_writer()
    writer.upsert([NEW[0]])
    writer.drain()
    writer.close()
    # a process died after logging these in the ivf store only (the flat store never saw them)
    ahead = LiveStore.open(dirs["ivf"] / DOCS_DB)
    ahead.log_upserts([NEW[1]])  # version 2
    ahead.delete(["cancer-3"])  # version 3
    ahead.log_upserts([_doc("gone", "ghost text")])  # version 4, then deleted while pending: nothing left of it
    ahead.delete(["gone"])  # version 5
    ahead.close()

    writer = open_writer()
    flat, ivf = writer.stores["flat"], writer.stores["ivf"]
    assert flat.version == ivf.version == 5
    assert flat.get("new-b")["state"] == "encoding" and flat.get("new-b")["version"] == 2
    assert flat.get("cancer-3") is None and flat.get("gone") is None
    assert writer.reconcile() == 0  # nothing left to roll
    assert writer.drain() == 1
    truth = {**{k: v for k, v in truth.items() if k != "cancer-3"}, **{d.id: d.full_text() for d in NEW[:2]}}
    for name, pipeline in writer.pipelines.items():
        assert _first_hit(pipeline, NEW[1].text) == "new-b", name
    _check_exact(writer, truth, [*QUERIES, "tumor cells chemotherapy"], assert_same_ranking)
    assert writer.upsert([NEW[2]])["first_version"] == 6


def test_reconcile_refuses_stores_that_took_different_writes(open_writer, built):
    dirs, _ = built
    apart = LiveStore.open(dirs["ivf"] / DOCS_DB)  # written apart: an upsert encoded into the ivf store only
    apart.log_upserts([NEW[0]])
    pending = apart.pending()
    apart.apply_encoded([(pending[0], FakeEncoder(dim=DIM).encode([NEW[0].full_text()])[0])])
    apart.close()
    with pytest.raises(ValueError, match=r"flat \(at write version 0\) and ivf \(at 1\) took different writes"):
        open_writer()


def test_pipelines_on_different_corpora_are_refused(tmp_path, built, write_beir):
    dirs, _ = built
    other = load_beir(write_beir(tmp_path / "other", seed=3))
    build_index_dir(other, FakeEncoder(dim=DIM), IndexSpec("Flat"), tmp_path / "other-ix", show_progress=False)
    pipelines = {"flat": Pipeline.load(dirs["flat"]), "other": Pipeline.load(tmp_path / "other-ix")}
    try:
        with pytest.raises(ValueError, match="built on different corpora"):
            CorpusWriter(pipelines)
    finally:
        for pipeline in pipelines.values():
            if pipeline.live is not None:
                pipeline.live.close()


def test_an_rflat_pipeline_is_refused_naming_the_fix(tmp_path, beir_dir):
    dataset = load_beir(beir_dir)
    build_index_dir(dataset, FakeEncoder(dim=DIM), IndexSpec("PQ4x4,RFlat"), tmp_path / "rflat", show_progress=False)
    pipeline = Pipeline.load(tmp_path / "rflat")
    with pytest.raises(NotWritableError, match="rebuild it without ,RFlat"):
        CorpusWriter({"rflat": pipeline})
    with pytest.raises(NotWritableError, match="rebuild it without ,RFlat"):
        Pipeline.load(tmp_path / "rflat", writable=True)
    assert pipeline.search("vitaminkey", k=3).hits, "the refused pipeline still searches"
    assert np.isfinite([h.score for h in pipeline.search("vitaminkey", k=3).hits]).all()
