"""sentence-transformers models on torch (teacher, MiniLM, distilled students) behind the `Encoder` protocol.

torch and sentence-transformers are imported when an encoder is built, never at import time."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from compression.encoders.base import TextKind, check_kind, count_truncated, encode_in_length_order
from compression.models import ModelRef, model_bytes, model_fingerprint
from compression.precision import autocast, resolve_precision
from semsearch_common.errors import MissingDependencyError

logger = logging.getLogger(__name__)


class SentenceTransformerEncoder:
    """A sentence-transformers model on torch (CPU by default) with a fixed thread count.

    `precision`: `fp32`, `bf16` (forward passes under bf16 autocast, vectors returned in float32) or `auto` (bf16
    on a GPU or a CPU with native bf16, else fp32; see `compression.precision`). A bf16 encoder says so in its
    identity, so its vectors are cached apart from fp32 ones; an fp32 identity is what it always was.
    """

    def __init__(
        self, model: ModelRef, threads: int | None = None, device: str = "cpu", precision: str = "fp32"
    ) -> None:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as err:  # pragma: no cover - core dependency
            raise MissingDependencyError(
                "the torch encoder needs `pip install torch==2.13.0 sentence-transformers`"
            ) from err
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.precision = resolve_precision(precision, device)
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
        with autocast(self.precision, self.device):
            vectors = self._model.encode(
                list(texts),
                batch_size=batch_size,
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors.float().cpu().numpy(), dtype=np.float32)

    def _features(self, texts: list[str]) -> dict[str, Any]:
        """Tokenised texts as the model takes them: the default prompt prepended, truncated to `max_seq_length`."""
        model = self._model
        prompt = model.prompts.get(model.default_prompt_name) if model.default_prompt_name else None
        if hasattr(model, "preprocess"):  # sentence-transformers >= 6
            return model.preprocess(texts, prompt=prompt)
        return model.tokenize([(prompt or "") + text for text in texts])  # pragma: no cover - older versions

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        def lengths(chunk: list[str]) -> list[int]:
            return self._features(chunk)["attention_mask"].sum(dim=1).tolist() if chunk else []

        return count_truncated(lengths, texts, self.max_seq_length)

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
        model = self._model
        model.eval()

        def tokenize(batch: list[str]) -> Any:
            return batch_to_device(self._features(batch), model.device)

        def forward(features: Any) -> np.ndarray:
            embeddings = model(features)["sentence_embedding"]
            return torch.nn.functional.normalize(embeddings, p=2, dim=1).float().cpu().numpy()

        with torch.inference_mode(), autocast(self.precision, self.device):
            return encode_in_length_order(texts, batch_size, self.dim, tokenize, forward)

    def identity(self) -> dict[str, Any]:
        identity = {
            "type": "sentence-transformers",
            "name": self.name,
            "path": str(self.model_ref.path),
            "fingerprint": model_fingerprint(self.model_ref.path),
            "dim": self.dim,
            "max_seq_length": self.max_seq_length,
        }
        if self.precision != "fp32":
            identity["precision"] = self.precision
        return identity

    def model_bytes(self) -> int:
        return model_bytes(self.model_ref.path)
