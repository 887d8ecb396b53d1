"""Thread limits reach FAISS's OpenMP pool and every BLAS, and are restored after the block."""

from __future__ import annotations

import faiss  # noqa: F401  (loads FAISS's libgomp and OpenBLAS so threadpoolctl can find them)
import pytest
from threadpoolctl import threadpool_info

from semsearch_common.threads import limit_threads


def pools() -> dict[str, int]:
    return {f"{p['user_api']}:{p['filepath']}": p["num_threads"] for p in threadpool_info()}


def test_limit_threads_limits_every_pool_including_openmp_and_restores_them() -> None:
    before = pools()
    assert any(name.startswith("openmp:") for name in before), "FAISS's OpenMP runtime should be visible"
    with limit_threads(1) as limited:
        assert all(pool["num_threads"] == 1 for pool in limited)
        assert set(pools().values()) == {1}
    assert pools() == before


def test_limit_threads_rejects_zero_and_none_changes_nothing() -> None:
    before = pools()
    with limit_threads(None):
        assert pools() == before
    with pytest.raises(ValueError, match=">= 1"):
        with limit_threads(0):
            pass


def test_thread_budget_shares_the_cores_and_honours_the_settings() -> None:
    from semsearch_common.threads import POOL_HEADROOM, ThreadBudget

    budget = ThreadBudget.plan(concurrency=4, cores=16)
    assert budget.describe() == {
        "cores": 16,
        "encoder": 16,  # concurrent runs share the session's pool: a lone query gets every core
        "search": 4,  # 4 batches searching at once share the 16 cores
        "single_query": 1,
        "request_pool": 4 + POOL_HEADROOM,
    }
    assert ThreadBudget.plan(threads=3, workers_threads=7, concurrency=8, cores=2).describe() == {
        "cores": 2,
        "encoder": 3,
        "search": 1,  # never below one
        "single_query": 1,
        "request_pool": 7,
    }
    with pytest.raises(ValueError, match="concurrency must be >= 1"):
        ThreadBudget.plan(concurrency=0)
    with pytest.raises(ValueError, match="thread budget encoder must be >= 1"):
        ThreadBudget(cores=1, encoder=0, search=1, single_query=1, request_pool=1)


def test_available_cores_follow_the_affinity_mask() -> None:
    import os

    from semsearch_common.threads import available_cores

    assert 1 <= available_cores() <= len(os.sched_getaffinity(0))


def test_thread_budget_sets_torch_once_for_the_process() -> None:
    import torch

    from semsearch_common.threads import ThreadBudget

    before = torch.get_num_threads()
    try:
        assert ThreadBudget.plan(threads=1, cores=2).apply_torch() is True
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
