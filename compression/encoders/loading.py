"""Build an encoder from a spec string (`teacher`, `minilm`, `fake:DIM`, a model folder) or a stored identity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compression.encoders.base import Encoder
from compression.encoders.fake import FakeEncoder
from compression.encoders.onnx import ONNX_CONFIG_FILE, OnnxEncoder
from compression.encoders.sentence import SentenceTransformerEncoder
from compression.models import resolve_model


def load_encoder(spec: str, threads: int | None = None, device: str = "cpu") -> Encoder:
    """Build an encoder from a spec: `teacher`, `minilm`, `fake:DIM`, a sentence-transformers folder, an ONNX
    model folder from `semsearch quantize` (fp32/ or int8/) or a static encoder folder (`compression.static`);
    `student:DIR` is accepted as an alias for a folder."""
    if spec.startswith("fake"):
        _, _, dim = spec.partition(":")
        try:
            return FakeEncoder(dim=int(dim or 32))
        except ValueError as err:
            raise ValueError(f"bad fake encoder spec {spec!r}: use fake or fake:DIM with DIM >= 2") from err
    spec = spec.removeprefix("student:")
    if (Path(spec).expanduser() / ONNX_CONFIG_FILE).exists():
        return OnnxEncoder(Path(spec).expanduser(), threads=threads)
    # imported here: compression.static.encoder imports compression.encoders.base, whose package imports this module
    from compression.static.encoder import STATIC_CONFIG_FILE, StaticEncoder

    if (Path(spec).expanduser() / STATIC_CONFIG_FILE).exists():
        return StaticEncoder(Path(spec).expanduser())
    return SentenceTransformerEncoder(resolve_model(spec), threads=threads, device=device)


def load_encoder_from_identity(identity: dict[str, Any], threads: int | None = None) -> Encoder:
    """Rebuild the encoder an index was built with, from its stored identity."""
    if identity.get("type") == "fake":
        return FakeEncoder(dim=int(identity["dim"]), name=identity.get("name", "fake"))
    if identity.get("type") == "onnx":
        return OnnxEncoder(identity["path"], threads=threads, name=identity.get("name"))
    if identity.get("type") == "static":
        from compression.static.encoder import StaticEncoder  # lazily, as in load_encoder

        return StaticEncoder(identity["path"], name=identity.get("name"))
    if identity.get("type") == "sentence-transformers":
        name = identity.get("name", "")
        spec = name if name in ("teacher", "minilm") else identity["path"]
        return load_encoder(spec, threads=threads)
    raise ValueError(
        f"unknown encoder type {identity.get('type')!r}: expected sentence-transformers, onnx, static or fake"
    )
