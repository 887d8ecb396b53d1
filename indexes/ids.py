"""Mapping between string document ids and the positional int64 ids FAISS stores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class DocIdMap:
    """Position i in the index is document `ids[i]`."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids: tuple[str, ...] = tuple(str(i) for i in ids)
        self._positions = {doc_id: pos for pos, doc_id in enumerate(self.ids)}
        if len(self._positions) != len(self.ids):
            seen: set[str] = set()
            duplicate = next(i for i in self.ids if i in seen or seen.add(i))
            raise ValueError(f"duplicate document id {duplicate!r}")

    def __len__(self) -> int:
        return len(self.ids)

    def to_ids(self, positions: np.ndarray) -> list[list[str]]:
        """Rows of int64 positions (with -1 for missing) -> rows of string ids (missing dropped)."""
        return [[self.ids[p] for p in row if p >= 0] for row in np.atleast_2d(positions)]

    def to_positions(self, ids: Sequence[str]) -> np.ndarray:
        unknown = [i for i in ids if i not in self._positions]
        if unknown:
            raise KeyError(f"unknown document ids: {unknown[:5]}")
        return np.array([self._positions[i] for i in ids], dtype=np.int64)
