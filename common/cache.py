"""Where the project keeps its caches (models, embeddings): `$SEMSEARCH_CACHE` or ~/.cache/semsearch."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "SEMSEARCH_CACHE"


def cache_root() -> Path:
    """Return the cache directory, read from the environment at call time (never at import)."""
    configured = os.environ.get(CACHE_ENV)
    root = Path(configured).expanduser() if configured else Path.home() / ".cache" / "semsearch"
    root.mkdir(parents=True, exist_ok=True)
    return root
