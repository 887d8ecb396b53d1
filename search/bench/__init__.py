"""The benchmarks behind `semsearch bench`, `bench-compression`, `bench-scale` and `bench-students`.

- `ann/`: recall vs latency sweeps (encoder x precision x index x search parameters), budget pick, loss split;
- `compression`: teacher, MiniLM and the student (fp32/int8, layouts) side by side;
- `scale/`: FAISS latency and recall against N, on vectors grown from real embeddings;
- `students/`: the student frontier (recall@10 vs teacher against query-encode latency, every student x precision);
  `student_plots` draws its frontier;
- `plots`: the frontier's figures (the frontier itself and the budget pick are `search.selection`'s).

Investigation tools (the latency study, the server's reliability harness, the Ray engine bench, the page's
screenshots) are not product code: they live beside their results in `benchmarks/<topic>/`, outside the package.

Timing, threads, machine facts and tables come from `semsearch_common`. May import `semsearch_common`, `compression`,
`indexes` and the
rest of `search` except `search.jobs`, `search.serve` and `search.cli`; only the CLI imports it (checked by
`tests/test_layering.py`).
"""
