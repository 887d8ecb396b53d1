"""The one cache-key function: content and settings decide the key, never where the files are."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from semsearch_common.cache import CACHE_ENV, cache_key, cache_root, location_free


def test_cache_key_is_the_sha256_of_sorted_json() -> None:
    payload = {"b": 2, "a": [1, "x"]}
    expected = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    assert cache_key(payload) == expected[:32]
    assert cache_key(payload, length=12) == expected[:12]
    assert cache_key({"a": [1, "x"], "b": 2}) == cache_key(payload)  # key order does not matter
    assert cache_key({"a": [1, "x"], "b": 3}) != cache_key(payload)


def test_location_free_identities_hit_the_same_key() -> None:
    here = {"type": "onnx", "fingerprint": "abc", "path": "/a/model"}
    there = {"type": "onnx", "fingerprint": "abc", "path": "/b/elsewhere"}
    assert cache_key(location_free(here)) == cache_key(location_free(there))
    assert cache_key(location_free(here)) != cache_key(location_free({**here, "fingerprint": "abd"}))


def test_cache_root_is_read_from_the_environment_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c1"))
    assert cache_root() == tmp_path / "c1"
    assert (tmp_path / "c1").is_dir()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c2"))
    assert cache_root() == tmp_path / "c2"
