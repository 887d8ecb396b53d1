"""Encode a corpus on Ray into the same cache entry the local path uses.

The key is `search.embeddings.embedding_cache_key(encoder identity, corpus fingerprint)` and the rows go through
`semsearch_common.array_cache.RowCache` as a stream of chunks in the local order (longest documents first), so
checkpoints, resume and the entry are the local path's: a corpus encoded on Ray is a cache hit for `encode_corpus`
and vice versa. The texts still to encode become a Ray Dataset mapped by a pool of `EncoderActor`s, each one
`compression.encoders.load_encoder(spec, threads)`: the local encoder classes, no second implementation. Ray restarts
an actor that dies (`RaySpec.max_restarts`) and retries the batch it held (`RaySpec.max_task_retries`).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Generator, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from compression.encoders import Encoder, load_encoder
from search.data.datasets import Document, corpus_fingerprint
from search.distributed.engine import RaySpec, ray_session, ray_status
from search.embeddings import CorpusEmbeddings, embedding_cache_key, embeddings_cache, encoding_order
from semsearch_common.array_cache import CHECKPOINT_SECONDS

logger = logging.getLogger(__name__)


class EncoderActor:
    """A Ray Data callable class: one encoder per actor, loaded once, encoding batches of {row, text} as passages.

    `fail_once` is a test hook: a file path; the first call that finds no file there creates it (writing its process
    id) and kills its own process, so Ray must restart the actor and retry the batch."""

    def __init__(self, spec: str, threads: int = 1, batch_size: int = 32, fail_once: str | None = None) -> None:
        self.encoder = load_encoder(spec, threads=threads)
        self.batch_size = batch_size
        self.fail_once = fail_once

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each item is one encoder batch (`rows`, `texts` as JSON lists): encoded as one call, exactly the batches a
        local run makes, so even an encoder whose output depends on its batch (dynamic int8 quantises activations
        per batch; padding follows the longest text) gives the local vectors."""
        if self.fail_once is not None and _claim(Path(self.fail_once)):
            os._exit(1)  # die like a killed worker: no clean-up, no exception for Ray to report
        rows: list[int] = []
        vectors: list[np.ndarray] = []
        for rows_json, texts_json in zip(batch["rows"], batch["texts"], strict=True):
            texts = json.loads(str(texts_json))
            rows.extend(json.loads(str(rows_json)))
            vectors.append(self.encoder.encode(texts, kind="passage", batch_size=max(len(texts), 1)))
        return {"row": np.asarray(rows, dtype=np.int64), "vector": np.concatenate(vectors).astype(np.float32)}


def _claim(marker: Path) -> bool:
    """Create `marker` (holding this process id) if it does not exist; True if this call created it."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(str(os.getpid()))
        handle.flush()
        os.fsync(handle.fileno())
    return True


def encode_corpus_ray(
    encoder_spec: str,
    corpus: Sequence[Document],
    ray_spec: RaySpec | None = None,
    chunk_size: int = 256,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    show_progress: bool = True,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
    encoder: Encoder | None = None,
    fail_once: Path | str | None = None,
) -> CorpusEmbeddings:
    """Encode every document as a passage on Ray, reusing or filling the cache entry `encode_corpus` uses.

    The cache key needs the encoder's identity: `encoder`, the driver's copy of `encoder_spec` if it has one loaded
    already, or the spec loaded here once. Ray is started or joined only if rows remain to encode. `fail_once` is the
    `EncoderActor` test hook."""
    ray_spec = ray_spec or RaySpec()
    driver_encoder = encoder if encoder is not None else load_encoder(encoder_spec)
    identity, name = driver_encoder.identity(), driver_encoder.name
    del driver_encoder  # the actors load their own; the driver keeps only what names the vector space
    key = embedding_cache_key(identity, corpus_fingerprint(corpus))
    texts = [doc.full_text() for doc in corpus]
    cache = embeddings_cache(cache_dir, use_cache, checkpoint_seconds=checkpoint_seconds)
    marker = None if fail_once is None else str(fail_once)

    def stream(chunks: list[list[int]]) -> Iterator[np.ndarray]:
        size = ray_spec.batch_size  # a local run encodes each chunk in batches of this many, from its start
        groups = [chunk[i : i + size] for chunk in chunks for i in range(0, len(chunk), size)]
        if not groups:
            return
        with ray_session(ray_spec):
            check_capacity(ray_spec)
            batches = encode_on_ray(encoder_spec, groups, texts, ray_spec, marker)
            try:
                yield from regroup(batches, chunks)
            finally:
                batches.close()  # stopped early (an error, Ctrl-C): Ray Data stops its actors, even in a reused Ray

    result = cache.compute(
        key,
        len(texts),
        order=encoding_order(texts),
        chunk_size=chunk_size,
        meta={"encoder": identity},
        label=f"encoding with {name} on Ray",
        unit="docs",
        show_progress=show_progress,
        compute_chunks=stream,
    )
    return CorpusEmbeddings(result.vectors, key, result.from_cache, result.seconds)


def check_capacity(spec: RaySpec) -> None:
    """Refuse a spec whose actors cannot all be placed (Ray would wait for CPUs forever)."""
    status = ray_status()
    if spec.cpus > status.cpus:
        raise ValueError(
            f"{spec.workers} workers x {spec.threads_per_worker} threads need {spec.cpus} CPUs, but the Ray instance "
            f"has {status.cpus:g} ({status.describe()}): use fewer workers or threads per worker"
        )
    logger.info("%s; %d encoder actor(s) x %d thread(s)", status.describe(), spec.workers, spec.threads_per_worker)


def encode_on_ray(
    encoder_spec: str,
    groups: Sequence[Sequence[int]],
    texts: Sequence[str],
    spec: RaySpec,
    fail_once: str | None = None,
) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
    """Yield (rows, vectors) for each group of rows (one encoder batch each; `texts` indexed by row) encoded by a
    pool of `spec.workers` encoder actors, in the order given. Needs a running Ray (`ray_session`)."""
    import ray.data

    dataset = ray.data.from_items(
        [
            {"rows": json.dumps([int(r) for r in group]), "texts": json.dumps([texts[r] for r in group])}
            for group in groups
        ]
    )
    context = dataset.context  # the dataset's own copy of the DataContext: nothing global changes
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False  # RowCache shows the progress
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    with warnings.catch_warnings():
        # Ray 2.60 deprecates extra keyword arguments (removal in 2.64) without a named replacement for the actors'
        # max_restarts / max_task_retries; they are the documented way to bound actor fault tolerance until then.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*is deprecated")
        encoded = dataset.map_batches(
            EncoderActor,
            batch_size=1,  # one item = one encoder batch
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=spec.workers),
            num_cpus=spec.threads_per_worker,
            fn_constructor_kwargs={
                "spec": encoder_spec,
                "threads": spec.threads_per_worker,
                "batch_size": spec.batch_size,
                "fail_once": fail_once,
            },
            max_restarts=spec.max_restarts,
            max_task_retries=spec.max_task_retries,
        )
    for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
        yield np.asarray(batch["row"], dtype=np.int64), np.asarray(batch["vector"], dtype=np.float32)


def regroup(batches: Iterable[tuple[np.ndarray, np.ndarray]], chunks: Sequence[Sequence[int]]) -> Iterator[np.ndarray]:
    """The rows of each chunk in turn, from (rows, vectors) batches cut anywhere and arriving in any order.

    A batch's rows are held until their chunk is complete (in order, that is at most one chunk); a row outside the
    chunks, a row twice or batches that end early raise ValueError."""
    wanted = {row for chunk in chunks for row in chunk}
    held: dict[int, np.ndarray] = {}
    arriving = iter(batches)
    for number, chunk in enumerate(chunks):
        while any(row not in held for row in chunk):
            batch = next(arriving, None)
            if batch is None:
                missing = sum(row not in held for row in chunk)
                raise ValueError(f"the encoded batches ended with {missing} rows of chunk {number} missing")
            for row, vector in zip(*batch, strict=True):
                row = int(row)
                if row not in wanted or row in held:
                    raise ValueError(f"row {row} came back twice or was never sent")
                held[row] = vector
        yield np.stack([held.pop(row) for row in chunk])
        wanted.difference_update(chunk)
