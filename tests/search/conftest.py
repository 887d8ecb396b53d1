"""Fixtures shared by the search tests (server and CLI): a teacher and a compressed index directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from compression.encoders import FakeEncoder
from indexes.faiss_index import IndexSpec
from search.data.datasets import load_beir
from search.pipeline import build_index_dir


@pytest.fixture
def index_dirs(tmp_path: Path, beir_dir: Path) -> dict[str, Path]:
    """A teacher (Flat, 128 d) and a compressed pipeline (PQ with exact re-ranking, 32 d; folder `small`) on the tiny
    dataset."""
    dataset = load_beir(beir_dir)
    teacher, small = tmp_path / "teacher", tmp_path / "small"
    build_index_dir(dataset, FakeEncoder(dim=128), IndexSpec("Flat"), teacher, show_progress=False)
    build_index_dir(dataset, FakeEncoder(dim=32), IndexSpec("PQ4x4,RFlat"), small, show_progress=False)
    return {"teacher": teacher, "compressed": small}
