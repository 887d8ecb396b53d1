"""Where the project keeps its caches (models, embeddings, targets, students), and the one cache-key function."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CACHE_ENV = "SEMSEARCH_CACHE"
LOCATION_KEYS = ("path",)


def cache_root() -> Path:
    """Return the cache directory, read from the environment at call time (never at import)."""
    configured = os.environ.get(CACHE_ENV)
    root = Path(configured).expanduser() if configured else Path.home() / ".cache" / "semsearch"
    root.mkdir(parents=True, exist_ok=True)
    return root


def location_free(identity: Mapping[str, Any]) -> dict[str, Any]:
    """An encoder/model identity without where its files happen to be: the same files anywhere hit the cache."""
    return {key: value for key, value in identity.items() if key not in LOCATION_KEYS}


def cache_key(payload: Mapping[str, Any], length: int = 32) -> str:
    """sha256 of the canonical JSON of `payload` (sorted keys; non-JSON values by `str`), cut to `length` hex digits.

    Callers pass identities through `location_free` first, so a key names content and settings, never a path.
    """
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
