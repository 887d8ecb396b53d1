import csv

from search.bench.scale.report import row_summary, scale_markdown, write_outputs


def tiny_result(k: int = 5) -> dict:
    """A hand-made result with one measured row, one skipped pair and one size of vector statistics."""
    row = {"n": 2000, "index": "IVF{nlist},PQ{m}", "factory": "IVF32,PQ4", "search_params": {"nprobe": 2.0},
           "build_s": 1.25, "train_s": 1.0, "add_s": 0.25, f"recall@{k}": 0.5, "latency_ms_p50": 0.0123,
           "latency_ms_p95": 0.0456, "latency_ms_mean": 0.02, "qps_batch64": 1234.4, "bytes_per_vector": 12.0,
           "index_bytes": 24_000,
           "peak_rss_mb": 120.4, "peak_rss_added_mb": 3.6, "rss_before_build_mb": 116.8}  # fmt: skip
    stats = {"copies_per_source": 6.7, "mean_cosine_to_source_corpus": 0.85, "mean_cosine_to_source_queries": 0.86,
             "mean_cosine_to_nearest_source_corpus": 0.87, "mean_cosine_to_nearest_source_queries": 0.88,
             "same_source_fraction_of_exact_top_k": 0.95, "mean_exact_top1_score": 0.9,
             "mean_exact_topk_last_score": 0.8}  # fmt: skip
    return {
        "spec": {"k": k, "latency_queries": 20, "repeats": 2, "queries": 100},
        "vectors": {
            "source": "s.npy",
            "source_count": 300,
            "dim": 32,
            "generator": "noise",
            "method": "recipe",
            "source_nearest_other_source_cosine": 0.7,
            "source_kth_other_source_cosine": 0.6,
            "profile_held_out_queries": 150,
            "per_size": {"2000": stats},
            "profile_vs_n": {
                "150": {"real_top1": 0.71, "real_topk_last": 0.61, "synthetic_top1": None, "synthetic_topk_last": None}
            },
        },  # fmt: skip
        "rows": [row],
        "skipped": [{"n": 2000, "index": "HNSW32", "factory": "HNSW32"}],
        "machine": {
            "cpu": "cpu",
            "cores": 2,
            "memory_gib": 8.0,
            "threads": 1,
            "python": "3.11",
            "thread_control": "threadpoolctl: openmp 1",
        },  # fmt: skip
        "note": "",
    }


def test_markdown_tables_format_each_cell():
    markdown = scale_markdown(tiny_result())
    assert "| N | index | factory | search params | latency p50 ms | p95 ms | recall@5 |" in markdown
    row = "| 2,000 | IVF{nlist},PQ{m} | IVF32,PQ4 | nprobe=2 | 0.012 | 0.046 | 0.5000 | 1234 | 12.0 | 1.2 | 1.0 | 120 | 4 |"  # noqa: E501
    assert row in markdown
    assert "| 2,000 | HNSW32 | HNSW32 | skipped |" in markdown
    assert "| 2,000 | 6.7 | 0.850 | 0.860 | 0.870 | 0.880 | 0.950 | 0.900 | 0.800 |" in markdown
    assert "| 150 | 0.710 | n/a | 0.610 | n/a |" in markdown
    assert "Caveat: at N = 2,000" in markdown  # a same-source share >= 0.9 gets the clumping caveat
    assert "(threadpoolctl: openmp 1)" in markdown
    assert "recipe." in markdown


def test_csv_has_one_line_per_row_with_k_in_the_recall_column(tmp_path):
    write_outputs(tiny_result(), tmp_path)
    with (tmp_path / "scale.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    assert rows[0]["recall@5"] == "0.5"
    assert rows[0]["search_params"] == "nprobe=2"
    assert (tmp_path / "scale_recall.png").read_bytes()[:4] == b"\x89PNG"
    assert row_summary(tiny_result()["rows"][0], k=5) == (
        "p50 0.012 ms, recall@5 0.5000, 12.0 B/vec, build 1.2 s, peak RSS 120 MB"
    )
