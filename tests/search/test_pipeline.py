import json

import numpy as np
import pytest

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec, build_index
from indexes.store import (
    DisplayDoc,
    IndexDirError,
    check_encoder_matches,
    load_index_dir,
    save_index_dir,
)
from search.data.datasets import load_beir
from search.embeddings import encode_corpus
from search.evaluation.evaluate import evaluate
from search.pipeline import Pipeline, build_index_dir


@pytest.fixture
def save_index(unit_vectors):
    """`save_index(path, n=50, dim=16, factory="Flat", meta=None)`: seeded vectors saved as an index directory."""

    def save(path, n=50, dim=16, factory="Flat", meta=None):
        vectors = unit_vectors(n, dim, seed=5)
        index = build_index(vectors, IndexSpec(factory)).index
        ids = [f"d{i}" for i in range(n)]
        docs = [DisplayDoc(f"title {i}", f"text {i}") for i in range(n)]
        return vectors, save_index_dir(path, index, ids, docs, meta or {"factory": factory})

    return save


def test_persistence_round_trip_gives_identical_results(save_index, tmp_path):
    vectors, meta = save_index(tmp_path / "ix", factory="IVF4,Flat")
    stored = load_index_dir(tmp_path / "ix")
    assert stored.meta == meta and meta["ntotal"] == 50 and meta["dim"] == 16
    assert stored.ids.ids[7] == "d7" and stored.docs[7] == DisplayDoc("title 7", "text 7")
    original = build_index(vectors, IndexSpec("IVF4,Flat")).index
    np.testing.assert_array_equal(stored.index.search(vectors[:5], 5)[1], original.search(vectors[:5], 5)[1])
    assert not list(tmp_path.glob(".*")), "no staging or temporary files are left behind"


def test_failed_save_keeps_the_previous_index(save_index, tmp_path, monkeypatch):
    save_index(tmp_path / "ix")
    before = (tmp_path / "ix" / "index.faiss").read_bytes()
    import indexes.store as store

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "write_json_atomic", explode)
    with pytest.raises(OSError, match="disk full"):
        save_index(tmp_path / "ix", n=60)
    assert (tmp_path / "ix" / "index.faiss").read_bytes() == before
    assert load_index_dir(tmp_path / "ix").meta["ntotal"] == 50
    assert not list(tmp_path.glob(".*"))


def test_refuses_to_overwrite_a_foreign_folder(save_index, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(IndexDirError, match="not an index directory; refusing"):
        save_index(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(IndexDirError, match="is a file, not an index directory"):
        save_index(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_load_errors_are_clear(save_index, tmp_path):
    with pytest.raises(IndexDirError, match="does not exist"):
        load_index_dir(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexDirError, match="no meta.json"):
        load_index_dir(tmp_path / "empty")
    save_index(tmp_path / "ix")
    ids_path = tmp_path / "ix" / "ids.json"
    ids_path.write_text(json.dumps(json.loads(ids_path.read_text())[:-1]))
    with pytest.raises(IndexDirError, match="inconsistent sizes"):
        load_index_dir(tmp_path / "ix")
    (tmp_path / "ix" / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexDirError, match="not a readable FAISS index"):
        load_index_dir(tmp_path / "ix")
    (tmp_path / "ix" / "meta.json").write_text("{")
    with pytest.raises(IndexDirError, match="malformed JSON"):
        load_index_dir(tmp_path / "ix")


def test_encoder_mismatch_is_refused():
    meta = {"encoder": {"name": "teacher", "dim": 768, "fingerprint": "abc"}}
    check_encoder_matches(meta, {"name": "teacher", "dim": 768, "fingerprint": "abc"}, "ix")
    with pytest.raises(IndexDirError, match=r"built with encoder 'teacher' \(dim 768\).*'minilm' \(dim 384\)"):
        check_encoder_matches(meta, {"name": "minilm", "dim": 384, "fingerprint": "def"}, "ix")
    with pytest.raises(IndexDirError, match="fingerprint"):
        check_encoder_matches(meta, {"name": "teacher", "dim": 768, "fingerprint": "other"}, "ix")


def test_build_search_and_evaluate_with_fake_encoder(tmp_path, beir_dir):
    dataset = load_beir(beir_dir)
    encoder = FakeEncoder(dim=128)
    report = build_index_dir(dataset, encoder, IndexSpec("Flat"), tmp_path / "ix", show_progress=False)
    assert report.meta["bytes_per_vector"] == pytest.approx(128 * 4)
    assert report.meta["encoder"] == encoder.identity() and report.meta["dataset"] == "tiny"
    pipeline = Pipeline.load(tmp_path / "ix")
    result = pipeline.search("vitamin calcium bone", k=5)
    assert len(result.hits) == 5 and result.hits[0].id.startswith("vitamin-")
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
    assert result.timings.total_ms >= result.timings.encode_ms + result.timings.search_ms - 1e-6
    assert len(pipeline.search("vitamin", k=1000).hits) == 60  # k beyond the corpus returns what exists

    report = evaluate(pipeline, dataset, split="test", show_progress=False)
    assert report["recall@10_vs_exact"] == 1.0  # Flat is exact
    assert 0.5 < report["ndcg@10"] <= 1.0 and report["recall@100"] == 1.0
    for key in ("encode_ms_p50", "encode_ms_p95", "search_ms_p50", "search_ms_p95", "bytes_per_vector", "model_bytes"):
        assert key in report


def test_recall_vs_teacher_uses_the_reference_exact_top10(tmp_path, beir_dir):
    dataset = load_beir(beir_dir)
    build_index_dir(dataset, FakeEncoder(dim=128), IndexSpec("Flat"), tmp_path / "teacher", show_progress=False)
    build_index_dir(dataset, FakeEncoder(dim=16), IndexSpec("Flat"), tmp_path / "small", show_progress=False)
    teacher = Pipeline.load(tmp_path / "teacher")
    same = evaluate(teacher, dataset, reference=teacher, show_progress=False)
    assert same["recall@10_vs_teacher"] == 1.0  # a Flat index agrees with its own exact search
    other = evaluate(Pipeline.load(tmp_path / "small"), dataset, reference=teacher, show_progress=False)
    assert other["recall@10_vs_exact"] == 1.0 and other["recall@10_vs_teacher"] < 1.0


def test_evaluate_refuses_another_corpus(write_beir, tmp_path, beir_dir):

    build_index_dir(load_beir(beir_dir), FakeEncoder(dim=16), IndexSpec("Flat"), tmp_path / "ix", show_progress=False)
    other = load_beir(write_beir(tmp_path / "other", seed=9))
    with pytest.raises(IndexDirError, match="another corpus"):
        evaluate(Pipeline.load(tmp_path / "ix"), other, show_progress=False)


def test_approximate_index_reports_recall_below_exact(tmp_path, beir_dir):
    dataset = load_beir(beir_dir)
    build_index_dir(dataset, FakeEncoder(dim=32), IndexSpec("PQ4x4"), tmp_path / "pq", show_progress=False)
    report = evaluate(Pipeline.load(tmp_path / "pq"), dataset, show_progress=False)
    assert 0.2 < report["recall@10_vs_exact"] < 1.0
    assert report["bytes_per_vector"] == pytest.approx(2)  # 4 sub-quantizers x 4 bits


def test_too_few_training_vectors_is_a_clear_error(tmp_path, beir_dir):
    with pytest.raises(ValueError, match=r"cannot train 'IVF256,Flat' on 60 vectors: .*at least as large"):
        build_index_dir(
            load_beir(beir_dir), FakeEncoder(dim=32), IndexSpec("IVF256,Flat"), tmp_path / "ix", show_progress=False
        )
    assert not (tmp_path / "ix").exists()


def test_embeddings_are_cached_and_reused(beir_dir):
    corpus = load_beir(beir_dir).corpus
    encoder = FakeEncoder(dim=16)
    first = encode_corpus(encoder, corpus, show_progress=False)
    calls = len(encoder.calls)
    second = encode_corpus(encoder, corpus, show_progress=False)
    assert second.from_cache and not first.from_cache and len(encoder.calls) == calls
    np.testing.assert_array_equal(first.vectors, second.vectors)
    third = encode_corpus(encoder, corpus[:-1], show_progress=False)
    assert not third.from_cache and third.key != first.key


def test_damaged_cache_entry_is_re_encoded(beir_dir, isolated_cache):
    corpus = load_beir(beir_dir).corpus
    first = encode_corpus(FakeEncoder(dim=16), corpus, show_progress=False)
    (isolated_cache / "embeddings" / f"{first.key}.npy").write_bytes(b"not an array")
    again = encode_corpus(FakeEncoder(dim=16), corpus, show_progress=False)
    assert not again.from_cache
    np.testing.assert_array_equal(again.vectors, first.vectors)


def test_interrupted_encoding_resumes_from_checkpoint(beir_dir, monkeypatch):
    corpus = load_beir(beir_dir).corpus

    class Flaky(FakeEncoder):
        def encode(self, texts, kind="query", batch_size=32):
            if len(self.calls) == 3:
                raise KeyboardInterrupt
            return super().encode(texts, kind, batch_size)

    flaky = Flaky(dim=16)
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(flaky, corpus, chunk_size=10, show_progress=False, checkpoint_seconds=-1.0)  # every chunk
    resumed = FakeEncoder(dim=16)
    result = encode_corpus(resumed, corpus, chunk_size=10, show_progress=False)
    assert sum(resumed.calls) == len(corpus) - 30  # three chunks of ten were already done
    np.testing.assert_allclose(result.vectors, FakeEncoder(dim=16).encode([d.full_text() for d in corpus]), atol=1e-6)
