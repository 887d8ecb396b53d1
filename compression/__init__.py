"""Model compression: turn the teacher into a small, fast query encoder.

- `models`: the teacher joined from its PyPI parts, MiniLM from its package, fingerprints and sizes;
- `encoders/`: the `Encoder` protocol and its kinds (sentence-transformers, ONNX Runtime, fake) and loading;
- `distill/`: distillation (config, losses, teacher targets, students, batching, training);
- `onnx_export`: one ONNX graph from token ids to the unit sentence vector;
- `quantize`: dynamic and static int8 of an exported graph.

May import `common`; never `search` (checked by tests/test_layering.py).
"""
