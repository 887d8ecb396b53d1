from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def source_npy(unit_vectors, tmp_path) -> Path:
    """300 clustered 32-d unit vectors saved as the .npy a scale run grows its corpus from."""
    path = tmp_path / "embeddings.npy"
    np.save(path, unit_vectors(300, 32, seed=1))
    return path
