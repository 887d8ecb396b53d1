import random
from typing import Any

import pytest

from search.bench.ann import best_under_budget, loss_split, mark_pareto, parse_encoders


def _row(encoder: str, recall: float, ms: float, size: float) -> dict[str, Any]:
    return {"encoder": encoder, "index": "Flat", "params": {}, "recall@10_vs_teacher": recall, "total_ms_p50": ms,
            "bytes_per_vector": size}  # fmt: skip


def test_budget_picks_the_best_fitting_row_and_says_when_none_fits():
    rows = [_row("a", 1.0, 50.0, 3072), _row("b", 0.9, 4.0, 1536), _row("c", 0.9, 3.0, 1536),
            _row("d", 0.95, 4.5, 96), _row("e", 0.6, 1.0, 48)]  # fmt: skip
    assert best_under_budget(rows, budget_ms=5.0)["best"]["encoder"] == "d"
    assert best_under_budget(rows, budget_ms=4.2)["best"]["encoder"] == "c"  # tie on recall: the faster one
    assert best_under_budget(rows, budget_bytes=1536)["best"]["encoder"] == "d"
    assert best_under_budget(rows, budget_ms=4.2, budget_bytes=100)["best"]["encoder"] == "e"
    assert best_under_budget(rows)["best"]["encoder"] == "a"
    none = best_under_budget(rows, budget_ms=0.5, budget_bytes=10)
    assert none["best"] is None
    assert "no configuration fits total_ms_p50 <= 0.5 ms and bytes_per_vector <= 10" in none["message"]
    assert "the fastest is e + Flat" in none["message"]
    assert "the smallest e + Flat at 48 bytes/vector" in none["message"]


def test_budget_pick_matches_a_filter_then_sort_on_random_rows():
    rng = random.Random(3)
    for _ in range(100):
        rows = [_row(str(i), rng.choice([0.5, 0.8, 0.9]), rng.choice([1.0, 2.0, 5.0]), rng.choice([48, 96, 1536]))
                for i in range(rng.randint(1, 10))]  # fmt: skip
        budget_ms, budget_bytes = rng.choice([None, 2.0]), rng.choice([None, 96])
        fitting = [r for r in rows if (budget_ms is None or r["total_ms_p50"] <= budget_ms)
                   and (budget_bytes is None or r["bytes_per_vector"] <= budget_bytes)]  # fmt: skip
        best = best_under_budget(rows, budget_ms, budget_bytes)["best"]
        if not fitting:
            assert best is None
            continue
        expected = sorted(fitting, key=lambda r: (-r["recall@10_vs_teacher"], r["total_ms_p50"]))[0]
        assert (best["recall@10_vs_teacher"], best["total_ms_p50"]) == (
            expected["recall@10_vs_teacher"], expected["total_ms_p50"])  # fmt: skip


def test_mark_pareto_flags_the_rows_no_other_row_beats():
    rows = [_row("a", 0.9, 10.0, 1), _row("b", 0.95, 10.0, 1), _row("c", 0.5, 1.0, 1), _row("d", 0.5, 2.0, 1),
            _row("e", 0.95, 10.0, 1)]  # fmt: skip
    mark_pareto(rows)
    assert {r["encoder"] for r in rows if r["pareto"]} == {"b", "c", "e"}  # a: b is as fast and better; d: c


def test_loss_split_per_encoder():
    entries = parse_encoders(["t=T", "s=S", "s-int8=Q@T"])
    rows = [
        {"encoder": "s", "index": "Flat", "params": {}, "default_params": True, "recall@10_vs_exact": 1.0,
         "recall@10_vs_teacher": 0.8},
        {"encoder": "s", "index": "IVF4,Flat", "params": {"nprobe": 1}, "default_params": True,
         "recall@10_vs_exact": 0.7, "recall@10_vs_teacher": 0.6},
        {"encoder": "s", "index": "IVF4,Flat", "params": {"nprobe": 4}, "default_params": False,
         "recall@10_vs_exact": 1.0, "recall@10_vs_teacher": 0.8},
    ]  # fmt: skip
    counterparts = {"t": "t", "s": "s", "s-int8": "s"}
    precisions = {"t": "fp32", "s": "fp32", "s-int8": "int8"}
    split = loss_split(rows, entries, {"t": 1.0, "s": 0.8, "s-int8": 0.75}, {"s-int8": 0.9}, counterparts,
                       precisions)  # fmt: skip
    items = {item["encoder"]: item for item in split["encoders"]}
    assert items["s"]["student_vs_teacher"]["loss"] == pytest.approx(0.2)
    assert items["s"]["int8_vs_fp32"] is None
    assert items["s-int8"]["int8_vs_fp32"] == {"fp32": "s", "loss": pytest.approx(0.05), "top10_overlap_with_fp32": 0.9}
    assert items["s-int8"]["doc_encoder"] == "t"
    assert items["s"]["ann_vs_exact"]["IVF4,Flat"]["loss"] == pytest.approx(0.3)  # the default setting only
    assert set(items["s"]["ann_vs_exact"]) == {"Flat", "IVF4,Flat"}
    assert items["t"]["ann_vs_exact"] == {}
