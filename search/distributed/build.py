"""Build an index directory on Ray: the corpus encoded by an actor pool, the index trained once and filled per shard.

`build_index_dir_ray` is `search.pipeline.build_index_dir` with two steps handed to Ray, nothing else changed (the
same meta.json, ids, docs and cache key as a local build):

1. the corpus vectors come from `encode_corpus_ray` (Ray Data `map_batches` over encoder actors; the same cache entry
   as a local run, so either engine reuses the other's work);
2. `ShardedBuilder` trains the index once in the driver on the same seeded sample as a local build
   (`indexes.faiss_index.train_index`), writes the trained empty index, fills one copy per contiguous shard of the
   corpus in Ray tasks (`indexes.shards.fill_shard`: global ids, so a document keeps its position whichever shard
   it went to), and merges them (`indexes.shards.merge_shards`): IVF indexes into one on-disk inverted-lists file
   with FAISS's `merge_ondisk` (it goes into the index directory and can be served memory-mapped), flat-code
   indexes (Flat, SQ, PQ) by concatenation; HNSW and `,RFlat` indexes cannot be filled from independent shards
   (HNSW's graph links across shards), so they are built in the driver and the build says so.

Every shard is written atomically with a completion record; a build that is killed resumes from the shards already
written (the work folder is keyed by the corpus vectors and the index settings). A shard task that fails is retried
by Ray (`max_task_retries`). On a cluster the work folder must be on storage every node sees.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compression.encoders import Encoder
from indexes.faiss_index import BuiltIndex, IndexSpec, apply_search_params, train_index
from indexes.shards import (
    fill_shard,
    merge_kind,
    merge_shards,
    read_index_file,
    shard_is_complete,
    shard_ranges,
    write_index_file,
)
from search.data.datasets import Dataset
from search.distributed.encode import encode_corpus_ray
from search.distributed.engine import RaySpec, ray_session, require_ray
from search.pipeline import BuildReport, build_index_dir
from semsearch_common.cache import cache_key

logger = logging.getLogger(__name__)

TRAINED_FILE = "trained.index"
MERGED_FILE = "merged.index"
IVFDATA_FILE = "lists.ivfdata"
CRASH_ENV = "SEMSEARCH_CRASH_AFTER_SHARDS"  # test hook: the driver dies (os._exit) after this many shards are written


@dataclass(frozen=True)
class ShardSpec:
    """How the index is split: `shards` contiguous parts of the corpus, filled in parallel Ray tasks."""

    shards: int = 4

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"shards must be >= 1, got {self.shards}")


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.index"


def work_folder(out_dir: Path, embedding_key: str, spec: IndexSpec, shards: int) -> Path:
    """Where the trained index and the shards go: beside the output, keyed by the vectors and the index settings,
    so a killed build finds its shards again and a different build never does."""
    key = cache_key({"vectors": embedding_key, "factory": spec.factory, "train_sample": spec.train_sample,
                     "seed": spec.seed, "shards": shards})[:16]  # fmt: skip
    return out_dir.parent / f".{out_dir.name}.shards-{key}"


@dataclass
class ShardedBuilder:
    """An `IndexBuilder` (vectors, spec, on_progress) -> BuiltIndex that fills shards in Ray tasks."""

    work_dir: Path
    shard_spec: ShardSpec
    ray_spec: RaySpec
    merged_kind: str = ""  # set by the build: "ondisk", "in_memory" or "driver"
    shards_reused: int = 0
    shards_built: int = 0
    ivfdata: Path | None = None
    fail_once: str | None = None  # test hook: a marker file; the first shard task to find it missing dies (Ray retries)

    def __call__(
        self, vectors: np.ndarray, spec: IndexSpec, on_progress: Callable[[str, int, int], None] | None = None
    ) -> BuiltIndex:
        trained_path = self.work_dir / TRAINED_FILE
        if trained_path.is_file():  # a resumed build: its shards were filled from this trained index
            logger.info("resuming: reusing the trained index %s", trained_path)
            trained, train_seconds = read_index_file(trained_path), 0.0
        else:
            trained, train_seconds = train_index(vectors, spec, on_progress=on_progress)
        self.merged_kind = merge_kind(trained)
        if self.merged_kind == "driver":
            logger.info("%s cannot be filled from independent shards: filling it in the driver", spec.factory)
            started = time.perf_counter()
            trained.add(np.ascontiguousarray(vectors, dtype=np.float32))
            apply_search_params(trained, spec.resolved_search_params())
            return BuiltIndex(trained, train_seconds, time.perf_counter() - started)
        ray = require_ray()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if not trained_path.is_file():
            write_index_file(trained, trained_path)
        started = time.perf_counter()
        ranges = shard_ranges(len(vectors), self.shard_spec.shards)
        paths = [self.work_dir / shard_name(i) for i in range(len(ranges))]
        todo = [i for i, (a, b) in enumerate(ranges) if not shard_is_complete(paths[i], a, b - a, trained_path)]
        self.shards_reused = len(ranges) - len(todo)
        if self.shards_reused:
            logger.info(
                "resuming: %d of %d shards already written in %s", self.shards_reused, len(ranges), self.work_dir
            )
        fill = ray.remote(fill_shard_task).options(
            num_cpus=self.ray_spec.threads_per_worker, max_retries=self.ray_spec.max_task_retries
        )
        shared = ray.put(np.ascontiguousarray(vectors, dtype=np.float32))  # one copy in the object store
        pending = {
            fill.remote(str(trained_path), shared, ranges[i][0], ranges[i][1], str(paths[i]),
                        self.ray_spec.threads_per_worker, self.fail_once): i
            for i in todo
        }  # fmt: skip
        done = self.shards_reused
        crash_after = int(os.environ.get(CRASH_ENV, "0") or 0)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ray.get(ready[0])  # raises if the task failed after its retries
            pending.pop(ready[0])
            done += 1
            self.shards_built += 1
            if on_progress:
                on_progress("add", ranges[min(done, len(ranges)) - 1][1], len(vectors))
            if crash_after and self.shards_built >= crash_after:
                logger.warning("%s=%d: dying after %d shards (test hook)", CRASH_ENV, crash_after, self.shards_built)
                os._exit(17)
        self.ivfdata = self.work_dir / IVFDATA_FILE if self.merged_kind == "ondisk" else None
        with native_stdout_to_stderr():  # FAISS's C++ prints "resizing ..." while merging: keep --json output clean
            merged = merge_shards(trained_path, paths, self.ivfdata)
        apply_search_params(merged, spec.resolved_search_params())
        if self.ivfdata is not None:
            write_index_file(merged, self.work_dir / MERGED_FILE)  # beside its lists: loadable from the work folder
        return BuiltIndex(merged, train_seconds, time.perf_counter() - started)

    def describe(self) -> dict[str, Any]:
        return {
            "name": "ray",
            "workers": self.ray_spec.workers,
            "threads_per_worker": self.ray_spec.threads_per_worker,
            "shards": self.shard_spec.shards,
            "merge": self.merged_kind,
            "shards_reused": self.shards_reused,
        }


@contextmanager
def native_stdout_to_stderr() -> Iterator[None]:
    """Send what native code writes to file descriptor 1 to stderr meanwhile (Python's own stdout is untouched)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def fill_shard_task(
    trained_path: str, vectors: np.ndarray, start: int, stop: int, out_path: str, threads: int,
    fail_once: str | None = None,
) -> int:  # fmt: skip
    """One Ray task: the trained index filled with rows start..stop (global ids), written atomically."""
    from indexes.faiss_index import openmp_threads

    if fail_once is not None and not Path(fail_once).exists():
        Path(fail_once).write_text(str(os.getpid()))
        os._exit(1)  # the worker dies mid-task: Ray runs the task again (max_retries)

    with openmp_threads(threads):
        fill_shard(Path(trained_path), vectors[start:stop], start, Path(out_path))
    return stop - start


def build_index_dir_ray(
    dataset: Dataset,
    encoder: Encoder,
    encoder_spec: str,
    spec: IndexSpec,
    out_dir: Path | str,
    ray_spec: RaySpec,
    shard_spec: ShardSpec | None = None,
    doc_encoder: Encoder | None = None,
    doc_encoder_spec: str | None = None,
    use_cache: bool = True,
    show_progress: bool = True,
) -> BuildReport:
    """`build_index_dir` with the corpus encoded and the index filled on Ray (see the module docstring).

    `encoder_spec` / `doc_encoder_spec` are the specs the actors load (`load_encoder`), `encoder` / `doc_encoder`
    the driver's copies (their identities go into meta.json, exactly as a local build)."""
    out_dir = Path(out_dir)
    shard_spec = shard_spec or ShardSpec()
    docs_spec = doc_encoder_spec or encoder_spec
    with ray_session(ray_spec):
        embeddings = encode_corpus_ray(docs_spec, dataset.corpus, ray_spec, use_cache=use_cache,
                                       show_progress=show_progress, encoder=doc_encoder or encoder)  # fmt: skip
        work = work_folder(out_dir, embeddings.key, spec, shard_spec.shards)
        builder = ShardedBuilder(work, shard_spec, ray_spec)
        extra_files: dict[str, Path] = {}  # filled by the build, read by build_index_dir after it (as is engine)
        engine: dict[str, Any] = {}

        def build(vectors: np.ndarray, index_spec: IndexSpec, on_progress: Any = None) -> BuiltIndex:
            built = builder(vectors, index_spec, on_progress=on_progress)
            if builder.ivfdata is not None:
                extra_files[builder.ivfdata.name] = builder.ivfdata
            engine["engine"] = builder.describe()
            return built

        report = build_index_dir(
            dataset, encoder, spec, out_dir, use_cache=use_cache, show_progress=show_progress,
            doc_encoder=doc_encoder, embeddings=embeddings, builder=build,
            extra_meta=engine, extra_files=extra_files,
        )  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)  # the index directory now holds everything
    return report
