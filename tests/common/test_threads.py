"""Thread limits reach FAISS's OpenMP pool and every BLAS, and are restored after the block."""

from __future__ import annotations

import faiss  # noqa: F401  (loads FAISS's libgomp and OpenBLAS so threadpoolctl can find them)
import pytest
from threadpoolctl import threadpool_info

from common.threads import limit_threads


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
