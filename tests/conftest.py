"""Shared fixtures: an isolated cache dir, a tiny BEIR dataset on disk, and seeded unit vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

TOPICS = {
    "vitamin": "vitamin d deficiency bone density calcium supplements",
    "cancer": "tumor cells cancer chemotherapy metastasis oncology",
    "heart": "cardiac heart failure blood pressure artery",
    "brain": "neurons brain cortex memory synapse",
    "virus": "viral infection influenza vaccine immune response",
}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache dir, so nothing leaks into ~/.cache/semsearch."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("SEMSEARCH_CACHE", str(cache))
    return cache


def write_beir(root: Path, n_docs_per_topic: int = 12, seed: int = 0) -> Path:
    """Write a small BEIR-layout dataset whose queries are answerable by word overlap."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    docs, queries, test, train = [], [], [], []
    for t, (topic, words) in enumerate(TOPICS.items()):
        vocab = words.split()
        for i in range(n_docs_per_topic):
            chosen = rng.choice(vocab, size=5)
            key = f" {topic}key" if i < 2 else ""  # the judged documents share a rare word with their query
            docs.append(
                {"_id": f"{topic}-{i}", "title": f"{topic} study {i}", "text": " ".join(chosen) + f" note{i}{key}"}
            )
        queries.append({"_id": f"q{t}", "text": f"{topic}key"})
        queries.append({"_id": f"t{t}", "text": f"{vocab[3]} {vocab[4]}"})
        test += [(f"q{t}", f"{topic}-0", 2), (f"q{t}", f"{topic}-1", 1)]
        train += [(f"t{t}", f"{topic}-2", 1)]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels").mkdir(exist_ok=True)
    for split, rows in (("test", test), ("train", train)):
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in rows]
        (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny")


def unit_vectors(n: int, dim: int, seed: int = 0, clusters: int = 16) -> np.ndarray:
    """Seeded clustered unit vectors, shaped like real embeddings (not uniform noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
