"""Text encoders behind one protocol.

- `base`: the `Encoder` protocol, text kinds, `l2_normalise`, `encode_timed` (stdlib + numpy only);
- `sentence`: sentence-transformers on torch (imported lazily);
- `onnx`: the torch-free ONNX Runtime encoder (the compressed query path);
- `fake`: a deterministic bag-of-words encoder for tests;
- `loading`: specs and stored identities -> encoders.

May import `compression.models` and `semsearch_common`; never `search`.
"""

from compression.encoders.base import (
    TEXT_KINDS,
    Encoder,
    TextKind,
    TimedEncoder,
    check_kind,
    encode_timed,
    l2_normalise,
)
from compression.encoders.fake import FakeEncoder
from compression.encoders.loading import load_encoder, load_encoder_from_identity
from compression.encoders.sentence import SentenceTransformerEncoder

__all__ = [
    "TEXT_KINDS",
    "Encoder",
    "FakeEncoder",
    "SentenceTransformerEncoder",
    "TextKind",
    "TimedEncoder",
    "check_kind",
    "encode_timed",
    "l2_normalise",
    "load_encoder",
    "load_encoder_from_identity",
]
