"""Several named pipelines side by side: load them, resolve a name, search one, compare them on a query, describe
them. `semsearch serve` and `semsearch search --compare` both run on a `PipelineSet`.

The first loaded is the default; the reference (the teacher, by default) is what `compare` measures the others by.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from compression.encoders.onnx import ONNX_CONFIG_FILE
from indexes.filters import MetadataFilter
from indexes.store import index_memory
from search.compare import CompareResult, choose_reference, compare_results
from search.pipeline import BatchResult, Pipeline, SearchResult, Timings
from search.sources import PipelineSource, duplicate_name_problems

logger = logging.getLogger(__name__)


class UnknownPipelineError(ValueError):
    """A name that is not one of the loaded pipelines; the message lists the loaded ones."""


def encoder_precision(identity: Mapping[str, Any]) -> dict[str, Any]:
    """Weight precision of an encoder from its stored identity: ONNX folders say so (identity, else their
    onnx_config.json, which also names the int8 quantization mode); torch and fake encoders are fp32."""
    if identity.get("type") != "onnx":
        return {"precision": "fp32", "quantization": None}
    config: dict[str, Any] = {}
    config_path = Path(str(identity.get("path", ""))) / ONNX_CONFIG_FILE
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        logger.warning("cannot read %s (%s): precision taken from the index metadata only", config_path, err)
    precision = identity.get("precision") or config.get("precision") or "fp32"
    return {"precision": precision, "quantization": config.get("quantization")}


class PipelineSet:
    """Named pipelines, the first the default, one the reference, with optional timings observers."""

    def __init__(
        self,
        pipelines: Mapping[str, Pipeline],
        reference: str | None = None,
        observer: Callable[[str, Timings], None] | None = None,
        batch_observer: Callable[[str, Timings, int], None] | None = None,
    ) -> None:
        self.pipelines = dict(pipelines)
        self.reference = choose_reference(list(self.pipelines), reference)
        self._observer = observer
        self._batch_observer = batch_observer

    @classmethod
    def load(
        cls,
        sources: Sequence[PipelineSource],
        threads: int | None = None,
        search_params: Mapping[str, float] | None = None,
        batch_search_threads: int | None = None,
        mmap: bool = False,
        writable: bool = False,
        **options: Any,
    ) -> PipelineSet:
        """Load every index directory and its encoder (`options` go to the constructor); `threads`: encoder threads,
        `batch_search_threads`: FAISS's OpenMP cap for batch searches (see `Pipeline`), `mmap`: memory-map the
        indexes, `writable`: open them for writes."""
        problems = duplicate_name_problems(sources)
        if problems:
            raise ValueError("; ".join(problems))
        pipelines = {}
        for source in sources:
            logger.info("loading pipeline %s from %s", source.name, source.index_dir)
            pipelines[source.name] = Pipeline.load(
                source.index_dir,
                threads=threads,
                search_params=search_params,
                batch_search_threads=batch_search_threads,
                mmap=mmap,
                writable=writable,
            )
        return cls(pipelines, **options)

    @property
    def names(self) -> list[str]:
        return list(self.pipelines)

    @property
    def default(self) -> str:
        return self.names[0]

    def resolve(self, name: str | None) -> str:
        """The pipeline a request means: `name`, or the first loaded when none is given."""
        if name is None:
            return self.default
        if name not in self.pipelines:
            raise UnknownPipelineError(f"unknown pipeline {name!r}; loaded: {', '.join(self.names)}")
        return name

    def get(self, name: str | None = None) -> Pipeline:
        return self.pipelines[self.resolve(name)]

    def search(
        self, query: str, k: int, name: str | None = None, where: MetadataFilter | None = None
    ) -> tuple[str, SearchResult]:
        name = self.resolve(name)
        result = self.pipelines[name].search(query, k, where=where)
        if self._observer:
            self._observer(name, result.timings)
        return name, result

    def search_batch(
        self, queries: Sequence[str], k: int, name: str | None = None, **options: Any
    ) -> tuple[str, BatchResult]:
        """`Pipeline.search_batch` on pipeline `name` (`options`: its micro_batch and checkpoint)."""
        name = self.resolve(name)
        result = self.pipelines[name].search_batch(queries, k, **options)
        if self._batch_observer:
            self._batch_observer(name, result.timings, len(queries))
        return name, result

    def compared_names(self, names: Sequence[str] | None = None) -> list[str]:
        """The pipelines a comparison of `names` runs, in loading order: those named (every one when None), and the
        reference, which the others are measured against."""
        if names is None:
            return self.names
        for name in names:
            self.resolve(name)  # UnknownPipelineError names the loaded ones
        wanted = {*names, self.reference}
        return [name for name in self.names if name in wanted]

    def compare(
        self, query: str, k: int, names: Sequence[str] | None = None, where: MetadataFilter | None = None
    ) -> CompareResult:
        """Run the pipelines of `names` (every one by default; the reference always) on `query` (among the
        documents passing `where`, when given); measure each top-k against the reference's top-k."""
        chosen = self.compared_names(names)
        return self.compare_results(query, k, {name: self.search(query, k, name, where)[1] for name in chosen})

    def compare_results(self, query: str, k: int, results: Mapping[str, SearchResult]) -> CompareResult:
        """Measure each pipeline's answer to `query` (`results`, one per pipeline) against the reference's."""
        return compare_results(query, k, self.reference, results)

    def describe(self) -> dict[str, dict[str, Any]]:
        """What each pipeline is: encoder and precision, documents' encoder, mode, index, sizes and build info."""
        described = {}
        for name, pipeline in self.pipelines.items():
            meta = pipeline.meta
            described[name] = {
                **pipeline.describe(),
                "index_memory": index_memory(pipeline.stored),  # resident vs on-disk bytes, measured now
                **encoder_precision(meta["encoder"]),
                "encoder_type": meta["encoder"].get("type"),
                "doc_encoder_precision": encoder_precision(meta.get("doc_encoder", meta["encoder"]))["precision"],
                "threads": getattr(pipeline.encoder, "threads", None),
                "spinning": getattr(pipeline.encoder, "spinning", None),  # ONNX encoders: intra-op spinning
                "is_reference": name == self.reference,
            }
        return described
