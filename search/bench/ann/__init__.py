"""`semsearch bench`: recall versus latency for every (encoder, index, search parameters) configuration.

For each encoder the corpus is encoded once (cached by `encode_corpus`) and the queries once, one at a time, timing
the encoder at batch 1. Each index is built once per encoder, then its search-time parameters are swept
ann-benchmarks style: every query is searched alone, `repeats` times, keeping each query's fastest time. The
teacher's exact top-10 is the ground truth of `recall@10_vs_teacher`; each encoder's own exact top-10 that of
`recall@10_vs_exact`. Latencies are per query: total = encode + search, p50/p95 over the queries.

Encoder entries are `label=spec[@docspec][^fp32label]`: `@docspec` encodes documents with another model (asymmetric
mode; a bare `@` means the `--doc-encoder` default), `^fp32label` names the fp32 counterpart of an int8 entry for the
"where the recall goes" split (otherwise `X-int8` pairs with `X`).

- `spec`: `BenchSpec`, `EncoderEntry`, the parsers of the command-line strings and each factory's parameter grid.
- `encoders`: each encoder's queries encoded and timed, its precision and fp32 counterpart.
- `measure`: the sweep runner: build one index, time and score it at every setting (`RunContext`, `EncoderRun`).
- `selections`: Pareto flags, the best row under a budget, the loss split.
- `report`: results.json/csv/md, machine.json, loss_split.json, summary.json and the plots.
- `run`: `run_bench`, the orchestration.

May import `semsearch_common`, `compression`, `indexes`, `search.data`, `search.embeddings`, `search.evaluation`,
`search.selection` (the Pareto frontier) and `search.bench.plots`; nothing imports it but the CLI and its tests.
"""

from search.bench.ann.encoders import EncodedQueries, encode_queries_timed, fp32_counterparts, precision_of
from search.bench.ann.measure import (
    ROW_KEYS,
    EncoderRun,
    IndexBuildError,
    RunContext,
    bench_index,
    time_batch_search,
    time_single_searches,
)
from search.bench.ann.report import BenchResult, results_markdown, rows_csv, write_outputs
from search.bench.ann.run import bench_machine, package_versions, run_bench
from search.bench.ann.selections import LOSS_DEFINITIONS, best_under_budget, describe, loss_split, mark_pareto
from search.bench.ann.spec import (
    BATCH,
    RECALL_K,
    TOP_K,
    BenchSpec,
    EncoderEntry,
    doc_encoder_name,
    format_params,
    make_bench_spec,
    parse_encoders,
    parse_indexes,
    parse_sweep,
    sweep_grid,
)

__all__ = [
    "BATCH",
    "LOSS_DEFINITIONS",
    "RECALL_K",
    "ROW_KEYS",
    "TOP_K",
    "BenchResult",
    "BenchSpec",
    "EncodedQueries",
    "EncoderEntry",
    "EncoderRun",
    "IndexBuildError",
    "RunContext",
    "bench_index",
    "bench_machine",
    "best_under_budget",
    "describe",
    "doc_encoder_name",
    "encode_queries_timed",
    "format_params",
    "fp32_counterparts",
    "loss_split",
    "make_bench_spec",
    "mark_pareto",
    "package_versions",
    "parse_encoders",
    "parse_indexes",
    "parse_sweep",
    "precision_of",
    "results_markdown",
    "rows_csv",
    "run_bench",
    "sweep_grid",
    "time_batch_search",
    "time_single_searches",
    "write_outputs",
]
