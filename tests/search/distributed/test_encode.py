"""Corpus encoding on Ray: the local path's vectors, row order and cache entry (both ways), a killed actor restarted."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from compression.encoders import FakeEncoder, load_encoder
from search.data.datasets import Document, load_beir
from search.distributed import encode as encode_module
from search.distributed.encode import encode_corpus_ray, regroup
from search.distributed.engine import RaySpec, ray_session, ray_status, require_ray
from search.embeddings import encode_corpus, encoding_order


def corpus_of(beir_dir: Path) -> tuple[Document, ...]:
    return load_beir(beir_dir).corpus


def direct_vectors(encoder: Any, corpus: tuple[Document, ...], batch_size: int = 32) -> np.ndarray:
    """The expected vectors, computed independently: one plain encode call in corpus order."""
    return encoder.encode([doc.full_text() for doc in corpus], kind="passage", batch_size=batch_size)


def test_fake_encoder_on_ray_gives_the_local_vectors_and_fills_the_local_cache(ray_local: Any, beir_dir: Path) -> None:
    corpus = corpus_of(beir_dir)
    on_ray = encode_corpus_ray("fake:32", corpus, RaySpec(batch_size=8), chunk_size=16, show_progress=False)
    assert not on_ray.from_cache
    assert on_ray.vectors.shape == (len(corpus), 32)
    np.testing.assert_allclose(on_ray.vectors, direct_vectors(FakeEncoder(dim=32), corpus), atol=1e-6)
    local_encoder = FakeEncoder(dim=32)
    local = encode_corpus(local_encoder, corpus, show_progress=False)
    assert local.from_cache
    assert local.key == on_ray.key
    assert local_encoder.calls == []  # no encoding at all
    np.testing.assert_array_equal(local.vectors, on_ray.vectors)  # the one stored entry, read back


def test_a_local_encoding_is_a_cache_hit_on_ray_without_starting_it(
    beir_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = corpus_of(beir_dir)
    local = encode_corpus(FakeEncoder(dim=32), corpus, chunk_size=7, show_progress=False)

    def no_ray(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a cache hit must not start Ray, nor load an encoder it was given")

    monkeypatch.setattr(encode_module, "ray_session", no_ray)
    on_ray = encode_corpus_ray("fake:32", corpus, RaySpec(workers=2), show_progress=False)
    assert on_ray.from_cache
    assert on_ray.key == local.key
    np.testing.assert_array_equal(on_ray.vectors, local.vectors)
    monkeypatch.setattr(encode_module, "load_encoder", no_ray)
    given = encode_corpus_ray("fake:32", corpus, encoder=FakeEncoder(dim=32), show_progress=False)
    assert given.from_cache
    assert given.key == local.key  # the driver's own encoder names the entry: no second load


def test_two_workers_and_a_killed_actor_give_the_same_vectors(ray_local: Any, beir_dir: Path, tmp_path: Path) -> None:
    corpus = corpus_of(beir_dir)
    marker = tmp_path / "killed-actor.pid"
    spec = RaySpec(workers=2, batch_size=4, max_restarts=2, max_task_retries=2)
    on_ray = encode_corpus_ray("fake:32", corpus, spec, chunk_size=8, show_progress=False, fail_once=marker)
    assert marker.exists(), "no actor died: the fault was never injected"
    killed = int(marker.read_text())
    assert not psutil.pid_exists(killed)  # that actor's process is gone; Ray ran the batch again elsewhere
    np.testing.assert_allclose(on_ray.vectors, direct_vectors(FakeEncoder(dim=32), corpus), atol=1e-6)
    local = encode_corpus(FakeEncoder(dim=32), corpus, show_progress=False)
    assert local.from_cache
    assert local.key == on_ray.key


def test_without_restarts_the_killed_actor_fails_the_encoding(
    ray_local: Any, beir_dir: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    """The control: the same fault with Ray's restarts off is fatal, so the run above survived by them."""
    marker = tmp_path / "killed-actor.pid"
    spec = RaySpec(workers=2, batch_size=4, max_restarts=0, max_task_retries=0)
    with pytest.raises(ray_local.exceptions.RayActorError):
        encode_corpus_ray("fake:32", corpus_of(beir_dir), spec, chunk_size=8, show_progress=False, fail_once=marker)
    assert marker.exists()
    assert not list(isolated_cache.glob("embeddings/*.npy"))  # nothing complete was stored


def test_a_tiny_sentence_transformers_model_on_ray_matches_the_local_path(
    ray_local: Any, beir_dir: Path, tmp_path: Path, build_tiny_sentence_model: Any
) -> None:
    corpus = corpus_of(beir_dir)
    folder = build_tiny_sentence_model(tmp_path / "tiny-model")
    on_ray = encode_corpus_ray(str(folder), corpus, RaySpec(batch_size=16), chunk_size=24, show_progress=False)
    encoder = load_encoder(str(folder), threads=1)
    # other batches pad differently: equal up to float rounding, not bitwise
    np.testing.assert_allclose(on_ray.vectors, direct_vectors(encoder, corpus, batch_size=5), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(on_ray.vectors, axis=1), 1.0, atol=1e-5)
    local = encode_corpus(encoder, corpus, show_progress=False)
    assert local.from_cache
    assert local.key == on_ray.key


def test_ray_session_reuses_a_running_ray_and_leaves_it_running(ray_local: Any) -> None:
    with ray_session(RaySpec(workers=1)) as ray:
        assert ray is ray_local
    assert ray_local.is_initialized()
    status = ray_status()
    assert status.nodes == 1
    assert status.cpus == pytest.approx(2.0)
    assert "2 CPUs" in status.describe()


def test_a_spec_needing_more_cpus_than_ray_has_is_refused(ray_local: Any, beir_dir: Path) -> None:
    with pytest.raises(ValueError, match="need 6 CPUs, but the Ray instance has 2"):
        encode_corpus_ray("fake:32", corpus_of(beir_dir), RaySpec(workers=3, threads_per_worker=2), use_cache=False)


def test_require_ray_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ImportError, match=re.escape("the Ray engine needs ray: pip install -e '.[ray]'")):
        require_ray()
    with pytest.raises(ImportError, match="pip install"):
        with ray_session():
            pass


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "workers must be >= 1"),
        ({"threads_per_worker": 0}, "threads_per_worker must be >= 1"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"max_restarts": -2}, "-1 \\(no limit\\), 0 \\(none\\) or a positive count"),
        ({"address": " "}, "None \\(a local Ray instance\\), 'auto', HOST:PORT or ray://HOST:PORT"),
    ],
)
def test_ray_spec_refuses_bad_settings(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RaySpec(**options)


def test_ray_spec_reserves_workers_times_threads_cpus() -> None:
    assert RaySpec(workers=3, threads_per_worker=2).cpus == 6
    assert RaySpec().cpus == 1


def test_the_order_is_longest_first_like_the_local_path() -> None:
    assert encoding_order(["ab", "abcd", "a", "abc"]) == [1, 3, 0, 2]


def test_regroup_rebuilds_chunks_from_batches_cut_anywhere_in_any_order() -> None:
    chunks = [[5, 1, 3], [0, 4], [2]]
    vectors = np.arange(6, dtype=np.float32)[:, None] * np.ones((1, 2), dtype=np.float32)  # row r is (r, r)
    rows = np.array([4, 1, 5, 2, 3, 0])  # the second chunk's row 4 arrives before the first chunk is complete
    batches = [(rows[a:b], vectors[rows[a:b]]) for a, b in ((0, 1), (1, 4), (4, 6))]
    out = list(regroup(batches, chunks))
    assert [chunk[:, 0].tolist() for chunk in out] == [[5.0, 1.0, 3.0], [0.0, 4.0], [2.0]]


def test_regroup_refuses_missing_duplicated_or_unknown_rows() -> None:
    chunk = [[0, 1]]
    one = np.ones((1, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="1 rows of chunk 0 missing"):
        list(regroup([(np.array([0]), one)], chunk))
    with pytest.raises(ValueError, match="row 0 came back twice"):
        list(regroup([(np.array([0]), one), (np.array([0]), one)], chunk))
    with pytest.raises(ValueError, match="row 7 came back twice or was never sent"):
        list(regroup([(np.array([7]), one)], chunk))
