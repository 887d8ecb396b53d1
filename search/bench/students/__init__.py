"""`semsearch bench-students`: every student x precision on one frontier, recall@10 vs the teacher's exact top-10
against single-query encode p50, with nDCG@10, model bytes, the teacher and the naive int8 MiniLM as references,
Pareto flags, and how held-out cosine to the teacher tracks recall.

- `measure`: `Candidate`, the teacher's side computed once (`prepare_context`) and one candidate's row
  (`measure_candidate`): exact search over the teacher's (asymmetric) or its own (symmetric) document vectors;
- `select`: pure functions over rows: Pareto and beats-MiniLM flags, the cosine-vs-recall correlation (the pick under
  a latency budget is `search.selection.budget_pick`, which the main job uses too);
- `run`: `run_student_bench`, interleaved latency and results.json / table.md / frontier.png.

May import `semsearch_common`, `compression`, `indexes`, `search.data`, `search.embeddings`, `search.evaluation` and
`search.selection` and `search.bench.plots`/`student_plots`; only the CLI and tests import it.
"""

from search.bench.students.measure import (
    DOC_SIDES,
    PRECISIONS,
    BenchContext,
    Candidate,
    check_fits_teacher,
    encode_one_at_a_time,
    load_candidate_encoder,
    measure_candidate,
    parse_candidate,
    prepare_context,
)
from search.bench.students.run import (
    NAIVE_ROW,
    PICK_METRIC,
    REFERENCE_FAMILY,
    TEACHER_ROW,
    naive_reference,
    results_markdown,
    run_student_bench,
)
from search.bench.students.select import (
    annotate_rows,
    average_ranks,
    correlation,
    cosine_recall_correlation,
)

__all__ = [
    "DOC_SIDES",
    "NAIVE_ROW",
    "PICK_METRIC",
    "PRECISIONS",
    "REFERENCE_FAMILY",
    "TEACHER_ROW",
    "BenchContext",
    "Candidate",
    "annotate_rows",
    "check_fits_teacher",
    "average_ranks",
    "correlation",
    "cosine_recall_correlation",
    "encode_one_at_a_time",
    "load_candidate_encoder",
    "measure_candidate",
    "naive_reference",
    "parse_candidate",
    "prepare_context",
    "results_markdown",
    "run_student_bench",
]
