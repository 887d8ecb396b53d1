"""Model compression: turn the teacher into a small, fast query encoder.

- `models`: the teacher joined from its PyPI parts, MiniLM from its package, fingerprints and sizes;
- `encoders/`: the `Encoder` protocol and its kinds (sentence-transformers, ONNX Runtime, fake) and loading;
- `static/`: the static query encoder in the teacher's space (one vector per token, no transformer at query time);
- `distill/`: distillation (config, losses, teacher targets, students, batching, training);
- `onnx_export`: one ONNX graph from token ids to the unit sentence vector;
- `quantize`: dynamic and static int8 of an exported graph (dynamic int8 on the fused graph where ORT fuses it);
- `vocab`: vocabulary pruning of an exported ONNX folder (the token-embedding rows a corpus reaches, plus a remap
  in the graph, so the tokenizer stays as it is).

May import `semsearch_common`; never `search` (checked by tests/test_layering.py).
"""
