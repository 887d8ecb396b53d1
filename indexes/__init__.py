"""FAISS indexes: everything that stores vectors and finds neighbours, independent of any encoder or dataset.

- `faiss_index`: factory strings, seeded training, search parameters through `faiss.ParameterSpace`;
- `exact`: blockwise exact inner-product search (the ground truth);
- `rescore`: full-precision re-ranking (`,RFlat`) split into two timed stages;
- `ids`: positional int64 ids <-> string document ids;
- `store`: the index directory (index.faiss, ids, display fields, meta.json), written atomically.

May import `semsearch_common`; never `search` or `compression` (checked by tests/test_layering.py).
"""
