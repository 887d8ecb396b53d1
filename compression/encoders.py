"""Text encoders behind one protocol: sentence-transformers models and a deterministic fake for tests."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from compression.models import ModelRef, model_bytes, model_fingerprint, resolve_model

logger = logging.getLogger(__name__)

TextKind = Literal["query", "passage"]
TEXT_KINDS: tuple[TextKind, ...] = ("query", "passage")


@runtime_checkable
class Encoder(Protocol):
    """Anything that turns texts into L2-normalised float32 vectors of a fixed dimension."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32) -> np.ndarray:
        """Encode `texts` as queries or passages into an (n, dim) float32 array of unit vectors."""
        ...

    def identity(self) -> dict[str, Any]:
        """What identifies this encoder's vector space: stored in index metadata and cache keys."""
        ...

    def model_bytes(self) -> int:
        """Size of the model files on disk."""
        ...


@runtime_checkable
class TimedEncoder(Protocol):
    """An encoder that can say how much of an encode call was tokenisation (optional capability)."""

    def encode_timed(
        self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32
    ) -> tuple[np.ndarray, float]:
        """Like `encode`, and also return the seconds spent tokenising (included in no other stage)."""
        ...


def encode_timed(
    encoder: Encoder, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32
) -> tuple[np.ndarray, float]:
    """Encode `texts` and return (vectors, tokenize_seconds); encoders without the split report 0 tokenize seconds,
    so their tokenisation stays inside the encode time."""
    if isinstance(encoder, TimedEncoder):
        return encoder.encode_timed(texts, kind=kind, batch_size=batch_size)
    return encoder.encode(texts, kind=kind, batch_size=batch_size), 0.0


def check_kind(kind: str) -> None:
    if kind not in TEXT_KINDS:
        raise ValueError(f"unknown text kind {kind!r}: use one of {', '.join(TEXT_KINDS)}")


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class SentenceTransformerEncoder:
    """A sentence-transformers model on torch (CPU by default) with a fixed thread count."""

    def __init__(self, model: ModelRef, threads: int | None = None, device: str = "cpu") -> None:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as err:  # pragma: no cover - core dependency
            raise ImportError("the torch encoder needs `pip install torch==2.13.0 sentence-transformers`") from err
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.model_ref = model
        self.device = device
        self._model = SentenceTransformer(str(model.path), device=device, local_files_only=True)
        self.name = model.name
        self.dim = int(self._model.get_embedding_dimension())
        self.max_seq_length = int(self._model.max_seq_length)

    def encode(self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32) -> np.ndarray:
        check_kind(kind)
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_timed(
        self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32
    ) -> tuple[np.ndarray, float]:
        """`encode` split in two timed parts: tokenising (`preprocess`, to the device) and the forward pass.

        Mirrors `SentenceTransformer.encode` (length-sorted batches, the default prompt, L2 normalisation), so the
        vectors match `encode` to float rounding (padding differs only where batches are grouped differently).
        """
        import torch
        from sentence_transformers.util import batch_to_device

        check_kind(kind)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        model = self._model
        prompt = model.prompts.get(model.default_prompt_name) if model.default_prompt_name else None
        order = np.argsort([-len(str(text)) for text in texts], kind="stable")
        tokenize_seconds = 0.0
        model.eval()
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                batch = [str(texts[i]) for i in rows]
                started = time.perf_counter()
                if hasattr(model, "preprocess"):  # sentence-transformers >= 6
                    features = model.preprocess(batch, prompt=prompt)
                else:  # pragma: no cover - older sentence-transformers
                    features = model.tokenize([(prompt or "") + text for text in batch])
                features = batch_to_device(features, model.device)
                tokenize_seconds += time.perf_counter() - started
                embeddings = model(features)["sentence_embedding"]
                embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=1)
                out[rows] = embeddings.float().cpu().numpy()
        return out, tokenize_seconds

    def identity(self) -> dict[str, Any]:
        return {
            "type": "sentence-transformers",
            "name": self.name,
            "path": str(self.model_ref.path),
            "fingerprint": model_fingerprint(self.model_ref.path),
            "dim": self.dim,
            "max_seq_length": self.max_seq_length,
        }

    def model_bytes(self) -> int:
        return model_bytes(self.model_ref.path)


_TOKEN = re.compile(r"\w+")


@dataclass
class FakeEncoder:
    """Deterministic bag-of-words hashing encoder: no model, instant, and texts sharing words score high."""

    dim: int = 32
    name: str = "fake"
    calls: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.dim < 2:
            raise ValueError(f"fake encoder dim must be >= 2, got {self.dim}")

    def _token_vector(self, token: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)

    def _tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        return [_TOKEN.findall(text.lower()) or [text] for text in texts]

    def _embed(self, token_lists: list[list[str]]) -> np.ndarray:
        out = np.zeros((len(token_lists), self.dim), dtype=np.float32)
        for row, tokens in enumerate(token_lists):
            for token in tokens:
                out[row] += self._token_vector(token)
        return l2_normalise(out)

    def encode(self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32) -> np.ndarray:
        check_kind(kind)
        self.calls.append(len(texts))
        return self._embed(self._tokenize(texts))

    def encode_timed(
        self, texts: Sequence[str], kind: TextKind = "query", batch_size: int = 32
    ) -> tuple[np.ndarray, float]:
        """`encode`, reporting the word splitting as the tokenize time."""
        check_kind(kind)
        self.calls.append(len(texts))
        started = time.perf_counter()
        token_lists = self._tokenize(texts)
        tokenize_seconds = time.perf_counter() - started
        return self._embed(token_lists), tokenize_seconds

    def identity(self) -> dict[str, Any]:
        return {"type": "fake", "name": self.name, "fingerprint": f"fake-{self.dim}", "dim": self.dim}

    def model_bytes(self) -> int:
        return 0


ONNX_CONFIG_NAME = "onnx_config.json"  # mirrors compression.onnx_encoder.ONNX_CONFIG_FILE without importing it


def load_encoder(spec: str, threads: int | None = None, device: str = "cpu") -> Encoder:
    """Build an encoder from a spec: `teacher`, `minilm`, `fake:DIM`, a sentence-transformers folder, or an ONNX
    model folder from `semsearch quantize` (fp32/ or int8/); `student:DIR` is accepted as an alias for a folder."""
    if spec.startswith("fake"):
        _, _, dim = spec.partition(":")
        try:
            return FakeEncoder(dim=int(dim or 32))
        except ValueError as err:
            raise ValueError(f"bad fake encoder spec {spec!r}: use fake or fake:DIM with DIM >= 2") from err
    spec = spec.removeprefix("student:")
    if (Path(spec).expanduser() / ONNX_CONFIG_NAME).exists():
        from compression.onnx_encoder import OnnxEncoder  # lazy: the ONNX path never needs torch

        return OnnxEncoder(Path(spec).expanduser(), threads=threads)
    return SentenceTransformerEncoder(resolve_model(spec), threads=threads, device=device)


def load_encoder_from_identity(identity: dict[str, Any], threads: int | None = None) -> Encoder:
    """Rebuild the encoder an index was built with, from its stored identity."""
    if identity.get("type") == "fake":
        return FakeEncoder(dim=int(identity["dim"]), name=identity.get("name", "fake"))
    if identity.get("type") == "onnx":
        from compression.onnx_encoder import OnnxEncoder  # lazy: onnxruntime only when needed

        return OnnxEncoder(identity["path"], threads=threads, name=identity.get("name"))
    if identity.get("type") == "sentence-transformers":
        name = identity.get("name", "")
        spec = name if name in ("teacher", "minilm") else identity["path"]
        return load_encoder(spec, threads=threads)
    raise ValueError(f"unknown encoder type {identity.get('type')!r}: expected sentence-transformers, onnx or fake")
