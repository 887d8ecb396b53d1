"""Teacher targets: the teacher's unit vectors of the training texts, in a content-addressed per-text store.

Short texts are cheap to encode but there are many of them (SciFact gives 124k sentences and windows), and every
recipe uses a different slice of them: 8k texts for the default, 124k for the large recipe, a held-out slice for
validation. So the store is keyed per *text*, not per list: a folder per vector space
(`cache_root()/distill-targets/<space key>/`, the key hashing the teacher's identity without its location, the
truncation and the numeric precision), holding append-only shards (`shard-<n>.npy` rows + `shard-<n>.json` the
texts' hashes, the JSON written last). Any list of texts reuses every row computed before for any other list; an
interrupted run loses at most the shard in progress (a shard without its JSON is ignored), and a damaged shard is
skipped, its texts recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from compression.encoders import l2_normalise
from compression.precision import autocast, resolve_precision
from semsearch_common.atomic import save_array_atomic, write_json_atomic
from semsearch_common.cache import cache_key, cache_root, location_free
from semsearch_common.progress import make_progress

logger = logging.getLogger(__name__)

TARGETS_DIR = "distill-targets"
TARGETS_CHUNK = 512  # texts per teacher call
SHARD_SECONDS = 60.0  # a shard is written at least this often, so an interrupted run loses at most a minute
SHARD_MAX_ROWS = 8192


class TeacherEncoder(Protocol):
    """What `compute_teacher_targets` needs of a teacher: an `Encoder` satisfies it."""

    def encode(
        self, texts: Sequence[str], kind: Literal["query", "passage"] = ..., batch_size: int = ...
    ) -> np.ndarray:
        """Unit vectors, one row per text."""
        ...

    def identity(self) -> dict[str, Any]:
        """What identifies the vector space (cache key)."""
        ...


def texts_fingerprint(texts: Sequence[str]) -> str:
    """A content hash of a list of texts, in order (length-prefixed, so no two lists collide by concatenation)."""
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(f"{len(encoded)}:".encode())
        digest.update(encoded)
    return digest.hexdigest()


def text_hash(text: str) -> str:
    """The store's key of one text (128 bits of sha256)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def targets_cache_key(identity: dict[str, Any], max_seq_length: int, precision: str) -> str:
    """The store folder's key: the teacher's identity without its location, the truncation, the precision."""
    payload = {
        "teacher": location_free(identity),
        "max_seq_length": max_seq_length,
        "precision": precision,
        "kind": "passage",
        "layout": "per-text",
    }
    return cache_key(payload, length=32)


@dataclass
class TargetStore:
    """The teacher's vectors of single texts in one vector space, appended shard by shard (see the module doc)."""

    folder: Path

    def _shards(self) -> list[tuple[Path, list[str]]]:
        shards = []
        for meta_path in sorted(self.folder.glob("shard-*.json")):
            try:
                hashes = json.loads(meta_path.read_text())["hashes"]
            except (OSError, ValueError, KeyError, TypeError) as err:
                logger.warning("skipping unreadable target shard %s (%s)", meta_path, err)
                continue
            shards.append((meta_path.with_suffix(".npy"), list(hashes)))
        return shards

    def lookup(self, hashes: Sequence[str]) -> tuple[np.ndarray | None, np.ndarray]:
        """(rows for `hashes` where known else zeros, a boolean mask of the known ones); None rows when none."""
        wanted: dict[str, list[int]] = {}
        for position, key in enumerate(hashes):
            wanted.setdefault(key, []).append(position)
        known = np.zeros(len(hashes), dtype=bool)
        rows: np.ndarray | None = None
        for path, shard_hashes in self._shards():
            hits = [(i, key) for i, key in enumerate(shard_hashes) if key in wanted]
            if not hits:
                continue
            try:
                vectors = np.load(path, mmap_mode="r", allow_pickle=False)
                if vectors.ndim != 2 or vectors.shape[0] != len(shard_hashes):
                    raise ValueError(f"shape {vectors.shape} for {len(shard_hashes)} texts")
            except (OSError, ValueError) as err:
                logger.warning("skipping damaged target shard %s (%s)", path, err)
                continue
            if rows is None:
                rows = np.zeros((len(hashes), vectors.shape[1]), dtype=np.float32)
            for i, key in hits:
                positions = wanted[key]
                rows[positions] = vectors[i]
                known[positions] = True
        return rows, known

    def append(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Write one shard (rows first, then the JSON that makes it visible)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        number = 1 + max((int(p.stem.split("-")[1]) for p in self.folder.glob("shard-*.json")), default=-1)
        stem = self.folder / f"shard-{number:06d}"
        save_array_atomic(stem.with_suffix(".npy"), np.ascontiguousarray(vectors, dtype=np.float32))
        write_json_atomic(stem.with_suffix(".json"), {"hashes": list(hashes)})


@contextmanager
def truncated(teacher: Any, max_seq_length: int) -> Iterator[None]:
    """Temporarily truncate an encoder that wraps a sentence-transformers model (`SentenceTransformerEncoder` keeps
    it in `_model`) to at most `max_seq_length` tokens, so teacher and student see the same text; other encoders
    (the fake one) have no truncation to set."""
    model = getattr(teacher, "_model", None)
    previous = getattr(model, "max_seq_length", None)
    if model is None or previous is None:
        yield
        return
    model.max_seq_length = min(int(previous), max_seq_length)
    try:
        yield
    finally:
        model.max_seq_length = previous


def _uses_torch(teacher: Any) -> bool:
    return getattr(teacher, "_model", None) is not None


def compute_teacher_targets(
    teacher: TeacherEncoder,
    texts: Sequence[str],
    max_seq_length: int,
    batch_size: int = 32,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    show_progress: bool = True,
    precision: str = "fp32",
    device: str = "cpu",
) -> tuple[np.ndarray, bool]:
    """Return (the teacher's unit vectors for `texts` as passages, whether every row came from the store).

    Rows are looked up per text in the store of (teacher, `max_seq_length`, precision); the missing texts are
    encoded in chunks (bf16 autocast when `precision` resolves to it, see `resolve_precision`) and appended.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to compute teacher targets for")
    resolved = resolve_precision(precision, device) if _uses_torch(teacher) else "fp32"
    store = TargetStore((cache_dir or cache_root()) / TARGETS_DIR /
                        targets_cache_key(teacher.identity(), max_seq_length, resolved))  # fmt: skip
    hashes = [text_hash(text) for text in texts]
    rows, known = store.lookup(hashes) if use_cache else (None, np.zeros(len(texts), dtype=bool))
    missing = list(dict.fromkeys(hashes[i] for i in np.flatnonzero(~known)))
    if not missing:
        logger.info("reusing %d cached teacher targets from %s", len(texts), store.folder)
        assert rows is not None
        return rows, True
    text_of = {hashes[i]: texts[i] for i in np.flatnonzero(~known)}
    logger.info("encoding %d of %d teacher targets (%s, max %d tokens)", len(missing), len(texts), resolved,
                max_seq_length)  # fmt: skip
    computed: dict[str, np.ndarray] = {}
    pending_keys: list[str] = []
    pending_rows: list[np.ndarray] = []
    last_write = time.perf_counter()
    started = time.perf_counter()
    with truncated(teacher, max_seq_length), autocast(resolved, device) if _uses_torch(teacher) else nullcontext():
        with make_progress(show_progress) as progress:
            task = progress.add_task("teacher targets", total=len(missing), info="")
            for start in range(0, len(missing), TARGETS_CHUNK):
                chunk = missing[start : start + TARGETS_CHUNK]
                vectors = l2_normalise(teacher.encode([text_of[k] for k in chunk], kind="passage",
                                                      batch_size=batch_size))  # fmt: skip
                computed.update(zip(chunk, vectors, strict=True))
                pending_keys += chunk
                pending_rows.append(vectors)
                done = start + len(chunk)
                elapsed = time.perf_counter() - started
                progress.update(task, completed=done, info=f"{done / max(elapsed, 1e-9):.1f} texts/s")
                flush = time.perf_counter() - last_write > SHARD_SECONDS or len(pending_keys) >= SHARD_MAX_ROWS
                if use_cache and pending_keys and (flush or done == len(missing)):
                    store.append(pending_keys, np.concatenate(pending_rows))
                    pending_keys, pending_rows, last_write = [], [], time.perf_counter()
    dim = next(iter(computed.values())).shape[0]
    out = rows if rows is not None else np.zeros((len(texts), dim), dtype=np.float32)
    for i in np.flatnonzero(~known):
        out[i] = computed[hashes[i]]
    return out, False
