"""Data: corpora, queries and graded qrels, and the texts distillation trains on.

- `records`: `Document`, `Dataset`, `DatasetError`, `corpus_fingerprint`;
- `plain`: a user's corpus (JSONL, CSV, TSV, a folder of .txt files); `beir`: the BEIR layout;
- `registry`: named datasets (`datasets.json`, package data), where they are looked up, the pooch download;
- `datasets`: `load_dataset(name_or_path)`, the entry point, re-exporting the loaders' public names;
- `training_texts`: texts for distillation, never the test queries.

May import `semsearch_common`; nothing else of this project (the rest of `search` builds on it).
"""
