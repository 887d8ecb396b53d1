"""Search: composes an encoder (`compression`) and an index (`indexes`) into a pipeline, and everything on top.

- `data/`: datasets (BEIR, plain corpora), training texts (never test queries);
- `embeddings`: cached corpus vectors; `pipeline`: encoder + index, build an index directory, timed search;
- `evaluation/`: metrics, the evaluator, the int8 quality gate;
- `jobs/`: distillation run, quantize, the main job (`semsearch run`);
- `selection`: the Pareto frontier and the pick under a latency budget;
- `bench/`: the ANN sweep, compression, scale and student benchmarks, plots;
- `serve/`: the multi-pipeline server, the FastAPI app, live metrics;
- `cli/`: the typer CLI, one module per command group; thin, like the HTTP routes.

May import `common`, `compression` and `indexes`.
"""
