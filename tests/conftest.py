"""Shared fixtures: an isolated cache dir, a tiny BEIR dataset on disk, seeded unit vectors and tiny models.

Builders are handed to tests as fixtures (`write_beir`, `unit_vectors`, `build_tiny_sentence_model`), never imported.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import Result

from compression.models import resolve_model

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


def _write_beir(root: Path, n_docs_per_topic: int = 12, seed: int = 0) -> Path:
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
    return _write_beir(tmp_path / "tiny")


def _unit_vectors(n: int, dim: int, seed: int = 0, clusters: int = 16) -> np.ndarray:
    """Seeded clustered unit vectors, shaped like real embeddings (not uniform noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


TINY_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _build_tiny_sentence_model(
    out_dir: Path,
    seed: int = 0,
    dense_dim: int | None = None,
    hidden_size: int = 32,
    max_seq_length: int = 128,
    num_layers: int = 2,
) -> Path:
    """Save a 2-layer BERT (hidden 32, 2 heads, intermediate 64) as Transformer -> mean Pooling -> [Dense] ->
    Normalize at `out_dir`, with the bundled MiniLM tokenizer files; return `out_dir`.

    `dense_dim` adds a Dense projection hidden_size -> dense_dim (tanh), to exercise the projection path.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel

    out_dir = Path(out_dir)
    minilm = resolve_model("minilm").path
    vocab_size = sum(1 for _ in (minilm / "vocab.txt").open(encoding="utf-8"))
    hf_dir = out_dir.parent / f"{out_dir.name}-hf"
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(hf_dir)
    for name in TINY_TOKENIZER_FILES:
        shutil.copyfile(minilm / name, hf_dir / name)

    modules = [Transformer(str(hf_dir), max_seq_length=max_seq_length), Pooling(hidden_size, pooling_mode="mean")]
    if dense_dim is not None:
        modules.append(Dense(hidden_size, dense_dim, activation_function=torch.nn.Tanh()))
    modules.append(Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(out_dir))
    shutil.rmtree(hf_dir)
    return out_dir


@pytest.fixture(scope="session")
def write_beir() -> Callable[..., Path]:
    """`write_beir(root, n_docs_per_topic=12, seed=0)`: a small BEIR folder answerable by word overlap."""
    return _write_beir


@pytest.fixture(scope="session")
def unit_vectors() -> Callable[..., np.ndarray]:
    """`unit_vectors(n, dim, seed=0, clusters=16)`: seeded clustered unit vectors."""
    return _unit_vectors


@pytest.fixture(scope="session")
def build_tiny_sentence_model() -> Callable[..., Path]:
    """`build_tiny_sentence_model(out_dir, seed=0, dense_dim=None, ...)`: a tiny random sentence-transformers model."""
    return _build_tiny_sentence_model


def _assert_same_top_k(
    found_ids: np.ndarray, found_scores: np.ndarray, exact_scores: np.ndarray, eps: float = 1e-5
) -> None:
    """Check a top-k search against exact scores from an independent computation, robust to float summation order:
    every id scoring clearly above the k-th exact score (by more than `eps`) must be found, no id scoring clearly
    below it may be, and each found score must equal that id's exact score within `eps`."""
    found_ids, exact_scores = np.asarray(found_ids), np.asarray(exact_scores)
    k = found_ids.shape[1]
    for row, (ids, scores, exact) in enumerate(zip(found_ids, np.asarray(found_scores), exact_scores, strict=True)):
        kth = np.sort(exact)[::-1][k - 1]
        must = set(np.flatnonzero(exact > kth + eps).tolist())
        assert must <= set(ids.tolist()), f"query {row}: missed {sorted(must - set(ids.tolist()))}"
        assert (exact[ids] >= kth - eps).all(), f"query {row}: found ids scoring clearly below the k-th"
        np.testing.assert_allclose(scores, exact[ids], atol=eps, err_msg=f"query {row}")


@pytest.fixture(scope="session")
def assert_same_top_k() -> Callable[..., None]:
    """`assert_same_top_k(found_ids, found_scores, exact_scores, eps=1e-5)`: top-k equal wherever gaps exceed eps."""
    return _assert_same_top_k


def _assert_same_ranking(
    got_ids: Sequence[str],
    got_scores: Sequence[float],
    want_ids: Sequence[str],
    want_scores: Sequence[float],
    eps: float = 1e-5,
) -> None:
    """Two rankings of the same search computed differently (batch 1 vs N, coalesced vs alone): equal length, scores
    equal within `eps`, and the same id at every rank whose score is more than `eps` from its neighbours' (near-ties
    may swap under another float summation order)."""
    assert len(got_ids) == len(want_ids), (list(got_ids), list(want_ids))
    np.testing.assert_allclose(got_scores, want_scores, atol=eps)
    scores = np.asarray(want_scores, dtype=np.float64)
    for rank, (got, want) in enumerate(zip(got_ids, want_ids, strict=True)):
        neighbours = scores[max(0, rank - 1) : rank + 2]
        tied = np.count_nonzero(np.abs(neighbours - scores[rank]) <= eps) > 1
        assert tied or got == want, f"rank {rank}: {got!r} != {want!r} (score {scores[rank]:.6f}, no near-tie)"


@pytest.fixture(scope="session")
def assert_same_ranking() -> Callable[..., None]:
    """`assert_same_ranking(got_ids, got_scores, want_ids, want_scores, eps=1e-5)`: same ranking up to near-ties."""
    return _assert_same_ranking


def _usage_error(result: Result, *named: str) -> str:
    """Check a typer usage error: exit status 2 and every `named` text in its message; return the message on one line
    (the box typer draws around it removed)."""
    message = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2, result.output
    for text in named:
        assert text in message, message
    return message


@pytest.fixture(scope="session")
def usage_error() -> Callable[..., str]:
    """`usage_error(result, *named)`: exit status 2 from typer's own checks, naming every `named` text."""
    return _usage_error
