"""Evaluation of a pipeline: pure retrieval metrics, the evaluator, and the int8 quality gate.

- `metrics`: nDCG@k (graded), recall@k, MRR@k and recall against a reference top-k, over id lists (trec_eval rules);
- `evaluate`: `semsearch eval`'s figures for one pipeline on one split (quality, recall vs exact and vs the
  teacher, encode and search latency timed apart with `semsearch_common.timing`, bytes);
- `quantize_gate`: does int8 cost more nDCG@10 than allowed? Measured on TRAIN queries only;
- `agreement`: a student's held-out agreement with the teacher (recall@10 vs its top-10, cosine) and encode p50;
- `side_by_side`: every served pipeline evaluated on its dataset against the reference's encoder (the server's
  `/evaluation` summary), or why it cannot be.

May import `semsearch_common`, `compression`, `indexes`, `search.data`, `search.embeddings` and `search.pipeline`;
never the
jobs, benchmarks, server or CLI that use it.
"""
