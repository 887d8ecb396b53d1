"""Fixtures of the server tests (the index directories they serve: `index_dirs` in tests/search/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from semsearch_common.threads import limit_threads


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny indexes build in milliseconds on one thread but can take seconds when OpenMP threads contend for a busy
    2-core machine."""
    with limit_threads(1):
        yield
