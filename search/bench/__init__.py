"""The benchmarks behind `semsearch bench`, `bench-compression`, `bench-scale` and `bench-students`.

- `ann/`: recall vs latency sweeps (encoder x precision x index x search parameters), budget pick, loss split;
- `compression`: teacher, MiniLM and the student (fp32/int8, layouts) side by side;
- `scale/`: FAISS latency and recall against N, on vectors grown from real embeddings;
- `students/`: the student frontier (recall@10 vs teacher against query-encode latency, every student x precision)
  and `budget_pick`, which the main job also uses to choose its student; `student_plots` draws its frontier;
- `pareto`, `plots`: the frontier and its figures;
- `reliability/`: the server under load, faults and hostile input; `web_screenshots`: the real page in headless
  Chromium (docs/screenshots).

Timing, threads, machine facts and tables come from `common`. May import `common`, `compression`, `indexes` and the
rest of `search` except `search.jobs` (the main job imports `students.budget_pick`, so the bench never imports the
jobs; the CLI commands do).
"""
