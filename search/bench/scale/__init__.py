"""`semsearch bench-scale`: search latency per query, recall@10 and memory against corpus size N.

SciFact has ~5k documents, far too few to show how indexes scale, so the corpus is grown synthetically from real
embeddings ("mix": points between real neighbours; "noise": noisy copies of one source), in seeded fixed-size
blocks so the corpus for N is an exact prefix of the corpus for any larger N. Ground truth is exact blockwise
inner-product top-k (`indexes.exact`).

- `generators`: source loading and the two seeded vector generators.
- `stats`: how the synthetic vectors relate to the real ones (cosines, same-source share, neighbour-score profile).
- `spec`: `ScaleBenchSpec`, factory templates ({nlist}, {m}) and validation.
- `run`: the orchestration (`run_scale_bench`) and the per-index measurement.
- `report`: scale.json/csv/md, the plots and the CLI summary line.

May import `semsearch_common`, `indexes` and `search.evaluation`; nothing imports it but the CLI and its tests.
"""

from search.bench.scale.generators import (
    GEN_BLOCK,
    GENERATORS,
    NOISE_MODES,
    VectorGenerator,
    load_source_vectors,
    make_generator,
    make_vectors,
    noise_transform,
    source_neighbours,
)
from search.bench.scale.report import FILES, row_summary, write_outputs
from search.bench.scale.run import run_scale_bench
from search.bench.scale.spec import (
    DEFAULT_INDEXES,
    DEFAULT_SIZES,
    ScaleBenchSpec,
    default_nlist,
    resolve_factory,
)

__all__ = [
    "DEFAULT_INDEXES",
    "DEFAULT_SIZES",
    "FILES",
    "GEN_BLOCK",
    "GENERATORS",
    "NOISE_MODES",
    "ScaleBenchSpec",
    "VectorGenerator",
    "default_nlist",
    "load_source_vectors",
    "make_generator",
    "make_vectors",
    "noise_transform",
    "resolve_factory",
    "row_summary",
    "run_scale_bench",
    "source_neighbours",
    "write_outputs",
]
