"""Search: composes an encoder (`compression`) and an index (`indexes`) into a pipeline, and everything on top.

- `data/`: datasets (BEIR, plain corpora), training texts (never test queries);
- `embeddings`: cached corpus vectors; `pipeline`: encoder + index, build an index directory, timed search;
- `sources`: named index directories (`NAME=DIR`); `pipeline_set`: named pipelines side by side; `compare`: each
  pipeline's top-k measured against a reference's;
- `evaluation/`: metrics, the evaluator, the int8 quality gate, the side-by-side evaluation;
- `selection`: the Pareto frontier and the pick under a latency budget;
- `distributed/`: the Ray engine (optional extra);
- `jobs/`: distillation run, quantize, the main job (`semsearch run`);
- `bench/`: the ANN sweep, compression, scale and student benchmarks, plots;
- `serve/`: the multi-pipeline server, the FastAPI app, live metrics;
- `cli/`: the typer CLI, one module per command group; thin, like the HTTP routes.

May import `semsearch_common`, `compression` and `indexes`. Inside it, `cli`, `serve`, `bench` and `jobs` are outer
layers
over the rest (the core): the core imports none of them, and they import each other only from the CLI (only
`search.cli.serve` imports `serve`); `tests/test_layering.py` checks it.
"""
