import csv
import io

from search.bench.ann import LOSS_DEFINITIONS, ROW_KEYS, results_markdown, rows_csv


def _row(encoder: str, index: str, params: dict, recall: float, pareto: bool) -> dict:
    row = {key: 0 for key in ROW_KEYS}
    row.update(encoder=encoder, doc_encoder=encoder, precision="fp32", index=index, params=params,
               default_params=True, pareto=pareto)  # fmt: skip
    row.update({"recall@10_vs_teacher": recall, "recall@10_vs_exact": 1.0, "ndcg@10": 0.51234, "recall@100": 0.9,
                "encode_ms_p50": 1.234, "search_ms_p50": 0.01234, "total_ms_p50": 1.24634, "total_ms_p95": 2.0,
                "qps_batch64": 812.6, "bytes_per_vector": 72.0, "build_s": 0.5})  # fmt: skip
    return row


ROWS = [_row("s", "Flat", {}, 0.8, True), _row("s", "IVF4,Flat", {"nprobe": 2, "k_factor": 1.5}, 0.7, False)]


def test_rows_csv_has_every_row_key_and_flat_params():
    parsed = list(csv.DictReader(io.StringIO(rows_csv(ROWS))))
    assert list(parsed[0]) == list(ROW_KEYS)
    assert [r["params"] for r in parsed] == ["-", "nprobe=2,k_factor=1.5"]
    assert [float(r["recall@10_vs_teacher"]) for r in parsed] == [0.8, 0.7]


def test_results_markdown_tables():
    losses = {
        "definitions": LOSS_DEFINITIONS,
        "encoders": [{"encoder": "s", "precision": "fp32", "fp32_counterpart": None, "exact_recall@10_vs_teacher": 0.8,
                      "student_vs_teacher": None, "int8_vs_fp32": None,
                      "ann_vs_exact": {"IVF4,Flat": {"params": {"nprobe": 1}, "loss": 0.25,
                                                     "recall@10_vs_teacher": 0.6}}}],
    }  # fmt: skip
    machine = {"cpu": "CPU", "cores": 2, "threads": 1, "faiss_omp_threads": 1, "versions": {"numpy": "2", "x": None}}
    skipped = [{"encoder": "s", "index": "IVF256,Flat", "reason": "too few"}]
    summary = {"dataset": "tiny", "split": "test", "queries": 10, "teacher": "t", "budget": None,
               "spec": {"repeats": 3}, "skipped": skipped, "plots": ["a.png"], "machine": machine}  # fmt: skip
    text = results_markdown(summary, ROWS, losses)
    assert "(FAISS 1 OpenMP threads). numpy 2." in text
    assert (
        "| s | s | fp32 | Flat | - | 0.800 | 1.000 | 0.5123 | 0.900 | 1.23 | 0.0123 | 1.25 | 2 | 813 | 72 | 0.50 | ★ |"
        in text
    )
    assert "| nprobe=2,k_factor=1.5 | 0.700 |" in text
    assert [line.endswith("| ★ |") for line in text.splitlines() if line.startswith("| s | s |")] == [True, False]
    assert "| s | fp32 | - | 0.800 | - | - | - |" in text  # no counterpart: the losses are dashes
    assert "| s | IVF4,Flat | nprobe=1 | 0.250 | 0.600 |" in text
    assert "- s + IVF256,Flat: too few" in text
    assert "![a.png](a.png)" in text
    for table_start in ("| encoder | docs |", "| encoder | prec |", "| encoder | index |"):
        header = next(line for line in text.splitlines() if line.startswith(table_start))
        lines = text.splitlines()
        separator = lines[lines.index(header) + 1]
        assert separator == "|" + "---|" * header.count(" | ") + "---|"  # one separator cell per column
