"""The benchmarks behind `semsearch bench`, `bench-compression`, `bench-scale` and `bench-students`.

- `ann/`: recall vs latency sweeps (encoder x precision x index x search parameters), budget pick, loss split;
- `compression`: teacher, MiniLM and the student (fp32/int8, layouts) side by side;
- `scale/`: FAISS latency and recall against N, on vectors grown from real embeddings;
- `students/`: the student frontier (recall@10 vs teacher against query-encode latency, every student x precision)
  and `budget_pick`, which the main job also uses to choose its student; `student_plots` draws its frontier;
- `pareto`, `plots`: the frontier and its figures.

Investigation tools (the latency study, the server's reliability harness, the Ray engine bench, the page's
screenshots) are not product code: they live beside their results in `benchmarks/<topic>/`, outside the package.

Timing, threads, machine facts and tables come from `common`. May import `common`, `compression`, `indexes` and the
rest of `search` except `search.jobs` and `search.serve` (the main job imports `students.budget_pick`, so the bench
never imports the jobs; the CLI commands do). Besides that one import, only `search.cli` imports the bench
(`tests/test_layering.py` checks who imports the bench and the server, and refuses the cycle a jobs import would make).
"""
