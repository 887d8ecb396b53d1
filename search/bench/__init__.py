"""The benchmarks behind `semsearch bench`, `bench-compression` and `bench-scale`.

- `ann/`: recall vs latency sweeps (encoder x precision x index x search parameters), budget pick, loss split;
- `compression`: teacher, MiniLM and the student (fp32/int8, layouts) side by side;
- `scale/`: FAISS latency and recall against N, on vectors grown from real embeddings;
- `pareto`, `plots`: the frontier and its figures.

Timing, threads, machine facts and tables come from `common`. May import `common`, `compression`, `indexes` and the
rest of `search`; only the CLI and tests import it.
"""
