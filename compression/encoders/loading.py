"""Build an encoder from a spec string (`teacher`, `minilm`, `fake:DIM`, a model folder) or a stored identity.

A model folder that cannot be loaded (missing or corrupt files) raises `ModelLoadError` naming the file; a stored
identity that cannot be rebuilt (unknown type, missing keys) raises it naming where the identity came from."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from compression.encoders.base import Encoder
from compression.encoders.fake import FakeEncoder
from compression.encoders.onnx import ONNX_CONFIG_FILE, ModelLoadError, OnnxEncoder
from compression.encoders.sentence import SentenceTransformerEncoder
from compression.models import ModelNotAvailableError, resolve_model

ENCODER_TYPES = ("sentence-transformers", "onnx", "static", "fake")
REBUILD_INDEX = "rebuild the index with `semsearch index`"
T = TypeVar("T")


def _loading(folder: Path | str, build: Callable[[], T]) -> T:
    """Run `build`; a failure to read the model folder becomes a `ModelLoadError` that names it."""
    try:
        return build()
    except (ModelLoadError, ModelNotAvailableError, FileNotFoundError, ImportError):
        raise
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as err:
        reason = " ".join(str(err).split())
        if str(folder) in reason:
            raise ModelLoadError(reason) from err
        raise ModelLoadError(f"{folder}: cannot load the model ({type(err).__name__}: {reason[:200]})") from err


def load_encoder(spec: str, threads: int | None = None, device: str = "cpu", precision: str = "fp32") -> Encoder:
    """Build an encoder from a spec: `teacher`, `minilm`, `fake:DIM`, a sentence-transformers folder, an ONNX
    model folder from `semsearch quantize` (fp32/ or int8/) or a static encoder folder (`compression.static`);
    `student:DIR` is accepted as an alias for a folder. `precision` (`fp32`, `bf16`, `auto`) applies to
    sentence-transformers models on torch."""
    if spec.startswith("fake"):
        _, _, dim = spec.partition(":")
        try:
            return FakeEncoder(dim=int(dim or 32))
        except ValueError as err:
            raise ValueError(f"bad fake encoder spec {spec!r}: use fake or fake:DIM with DIM >= 2") from err
    spec = spec.removeprefix("student:")
    if (Path(spec).expanduser() / ONNX_CONFIG_FILE).exists():
        return OnnxEncoder(Path(spec).expanduser(), threads=threads)  # raises ModelLoadError itself
    # imported here: compression.static.encoder imports compression.encoders.base, whose package imports this module
    from compression.static.encoder import STATIC_CONFIG_FILE, StaticEncoder

    if (Path(spec).expanduser() / STATIC_CONFIG_FILE).exists():
        return _loading(Path(spec).expanduser(), lambda: StaticEncoder(Path(spec).expanduser()))
    model = resolve_model(spec)
    return _loading(model.path, lambda: SentenceTransformerEncoder(model, threads=threads, device=device,
                                                                   precision=precision))  # fmt: skip


def check_identity(identity: Any, where: Path | str | None = None) -> None:
    """Refuse a stored encoder identity that cannot be rebuilt: not an object, an unknown type, keys missing.

    `where` (e.g. the index's meta.json) starts the message, so it names the file at fault."""
    prefix = f"{where}: " if where is not None else ""
    if not isinstance(identity, Mapping):
        raise ModelLoadError(
            f"{prefix}the encoder identity must be a JSON object, got {type(identity).__name__}; {REBUILD_INDEX}"
        )
    kind = identity.get("type")
    if kind not in ENCODER_TYPES:
        raise ModelLoadError(
            f"{prefix}unknown encoder type {kind!r}: expected one of {', '.join(ENCODER_TYPES)}; {REBUILD_INDEX}"
        )
    named = kind == "sentence-transformers" and identity.get("name") in ("teacher", "minilm")
    needed = {"fake": ("dim",), "onnx": ("path",), "static": ("path",), "sentence-transformers": ("path",)}[kind]
    missing = [key for key in needed if key not in identity and not named]
    if missing:
        raise ModelLoadError(f"{prefix}the {kind} encoder identity lacks {', '.join(missing)}; {REBUILD_INDEX}")
    if kind == "fake" and (not isinstance(identity["dim"], int) or isinstance(identity["dim"], bool)):
        raise ModelLoadError(f"{prefix}the encoder dim {identity['dim']!r} is not an integer; {REBUILD_INDEX}")
    if kind != "fake" and not named and not Path(str(identity["path"])).expanduser().is_dir():
        raise ModelLoadError(
            f"{prefix}the encoder's model folder {identity['path']} does not exist; restore it there or {REBUILD_INDEX}"
        )


def load_encoder_from_identity(
    identity: Mapping[str, Any], threads: int | None = None, where: Path | str | None = None
) -> Encoder:
    """Rebuild the encoder an index was built with, from its stored identity (`where`: the file it came from)."""
    check_identity(identity, where)
    if identity["type"] == "fake":
        return FakeEncoder(dim=int(identity["dim"]), name=identity.get("name", "fake"))
    if identity["type"] == "onnx":
        return OnnxEncoder(identity["path"], threads=threads, name=identity.get("name"))
    if identity["type"] == "static":
        from compression.static.encoder import StaticEncoder  # lazily, as in load_encoder

        return _loading(identity["path"], lambda: StaticEncoder(identity["path"], name=identity.get("name")))
    name = identity.get("name", "")
    return load_encoder(name if name in ("teacher", "minilm") else identity["path"], threads=threads,
                        precision=str(identity.get("precision", "fp32")))  # fmt: skip
