"""FAISS indexes: everything that stores vectors and finds neighbours, independent of any encoder or dataset.

- `faiss_index`: factory strings, seeded training, search parameters through `faiss.ParameterSpace`;
- `exact`: blockwise exact inner-product search (the ground truth);
- `rescore`: exact re-ranking of candidates (`,RFlat`'s vectors in RAM, or the vector file) as a timed stage;
- `vector_file`: the full-precision vectors of an index (fp16/fp32 .npy), memory-mapped, read per candidate;
- `docstore`: document ids, titles and snippets in SQLite, read per hit;
- `ids`: positional int64 ids <-> string document ids, in memory (benchmarks);
- `choice`: the compact-index rule (smallest codes whose rescored recall@10 vs exact reaches a target);
- `store`: the index directory (index.faiss, docs.sqlite, vectors.npy, meta.json), written atomically.

May import `semsearch_common`; never `search` or `compression` (checked by tests/test_layering.py).
"""
