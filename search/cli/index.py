"""`semsearch index`, `search` and `eval`: build an index directory, query it, evaluate it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from compression.precision import DEFAULT_ENCODE_PRECISION
from search.cli.base import (
    AsJson,
    IndexDirOption,
    app,
    check_index_dir,
    console,
    parse_params,
    print_json,
    print_mapping,
    run_or_exit,
    threads_option,
)
from search.cli.choices import BadRecordPolicy, Engine, Precision, VectorPrecision
from semsearch_common.threads import resolve_threads

if TYPE_CHECKING:
    from indexes.filters import MetadataFilter
    from search.compare import CompareResult
    from search.pipeline import SearchResult
    from search.sources import PipelineSource


@app.command()
def index(
    out: Annotated[Path, typer.Option("--out", help="index directory to write")],
    dataset: Annotated[str, typer.Option(help="scifact, a BEIR folder, a .jsonl/.csv/.tsv file or a .txt folder")],
    encoder: Annotated[
        str, typer.Option(help="query encoder: teacher, minilm, an ST folder, an ONNX folder (student:DIR), fake:DIM")
    ] = "teacher",
    index_factory: Annotated[
        str, typer.Option("--index", help="FAISS factory, e.g. Flat, HNSW32, IVF256,PQ48")
    ] = "Flat",
    doc_encoder: Annotated[
        str | None, typer.Option(help="asymmetric mode: encode documents with this (e.g. teacher) instead")
    ] = None,
    params: Annotated[
        str | None, typer.Option(help="default search parameters, e.g. nprobe=16 or oversample=4")
    ] = None,
    vectors: Annotated[
        VectorPrecision,
        typer.Option(
            help="keep the full-precision vectors in the directory (vectors.npy, memory-mapped) as fp16 or fp32, to "
            "rescore the top k x oversample candidates from disk (default oversample 4 for lossy codes); none: "
            "keep no vector file"
        ),
    ] = "fp16",
    train_sample: Annotated[int, typer.Option(help="max vectors used to train the index")] = 100_000,
    seed: Annotated[int, typer.Option(help="seed for the training sample and k-means")] = 0,
    batch_size: Annotated[int, typer.Option(help="encoding batch size")] = 32,
    threads: Annotated[int | None, threads_option("torch or onnxruntime threads for encoding")] = None,
    precision: Annotated[
        Precision, typer.Option(help="torch encoders: auto (bf16 where the CPU has it natively), fp32 or bf16")
    ] = DEFAULT_ENCODE_PRECISION,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="re-encode even if cached")] = False,
    on_bad_record: Annotated[
        BadRecordPolicy,
        typer.Option(
            help="a bad corpus record (wrong type, empty text, duplicate id, broken quoting, bad bytes): fail (exit 2, "
            "naming file and line) or skip (leave it out, warn, count it in meta.json's skipped_records)"
        ),
    ] = "fail",
    engine: Annotated[
        Engine,
        typer.Option(
            help="local (this process) or ray: the corpus encoded by a pool of encoder actors (Ray Data map_batches) "
            "and the index filled per shard in Ray tasks, then merged (IVF: on-disk inverted lists); pip install "
            "-e '.\\[ray]'"
        ),
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="with --engine ray: an existing cluster (e.g. ray://head:10001, auto)")
    ] = None,
    workers: Annotated[int, typer.Option(help="with --engine ray: encoder actors (and shard tasks at once)")] = 1,
    threads_per_worker: Annotated[
        int, typer.Option(help="with --engine ray: torch/onnxruntime/FAISS threads in each actor or task")
    ] = 1,
    shards: Annotated[int, typer.Option(help="with --engine ray: index shards filled in parallel tasks")] = 4,
    as_json: AsJson = False,
) -> None:
    """Encode a corpus (cached) and build a FAISS index directory (in this process, or on Ray with --engine ray)."""
    from compression.encoders import load_encoder
    from indexes.faiss_index import IndexSpec, validate_factory
    from search.data.datasets import load_dataset
    from search.pipeline import build_index_dir

    def action() -> dict[str, Any]:
        spec = IndexSpec(index_factory, train_sample=train_sample, seed=seed, search_params=parse_params(params),
                         vectors=vectors.value)  # fmt: skip
        ray_spec = None
        if engine == "ray":
            from search.distributed.engine import RaySpec, require_ray

            require_ray()  # before any model loads: a missing extra is a one-line error
            ray_spec = RaySpec(address=ray_address, workers=workers, threads_per_worker=threads_per_worker,
                               batch_size=batch_size)  # fmt: skip
        data = load_dataset(dataset, on_bad_record=on_bad_record.value)
        cores = resolve_threads(threads)
        query_encoder = load_encoder(encoder, threads=cores, precision=precision.value)
        docs_encoder = load_encoder(doc_encoder, threads=cores, precision=precision.value) if doc_encoder else None
        validate_factory(index_factory, query_encoder.dim)
        if ray_spec is not None:
            from search.distributed.build import ShardSpec, build_index_dir_ray

            report = build_index_dir_ray(data, query_encoder, encoder, spec, out, ray_spec, ShardSpec(shards),
                                         doc_encoder=docs_encoder, doc_encoder_spec=doc_encoder,
                                         use_cache=not no_cache, show_progress=True)  # fmt: skip
        else:
            report = build_index_dir(data, query_encoder, spec, out, batch_size=batch_size, use_cache=not no_cache,
                                     show_progress=True, doc_encoder=docs_encoder)  # fmt: skip
        return {**report.summary(), "skipped_records": report.meta.get("skipped_records", 0)}

    print_mapping("index built", run_or_exit(action), as_json)


@app.command(name="migrate-index")
def migrate_index(
    index_dir: Annotated[Path, typer.Argument(help="a format 1 index directory (ids.json, docs.jsonl) to convert")],
    vectors: Annotated[
        VectorPrecision,
        typer.Option(help="also keep the corpus vectors (from the embedding cache, when it holds them) as fp16/fp32"),
    ] = "fp16",
    as_json: AsJson = False,
) -> None:
    """Convert an index directory of the previous format in place (atomically): its ids and display fields move into
    the SQLite document store, and the corpus vectors, when cached, into the vector file for rescoring."""
    from indexes.store import migrate_index_dir
    from search.embeddings import load_cached_embeddings

    def action() -> dict[str, Any]:
        import json

        meta = json.loads((index_dir / "meta.json").read_text()) if (index_dir / "meta.json").is_file() else {}
        cached = None
        if (
            vectors.value != "none"
            and isinstance(meta.get("embedding_key"), str)
            and isinstance(meta.get("ntotal"), int)
        ):
            cached = load_cached_embeddings(meta["embedding_key"], meta["ntotal"])
        new = migrate_index_dir(
            index_dir, None if cached is None else cached.vectors, vectors.value if cached else "fp16"
        )
        return {
            "index_dir": str(index_dir),
            "format_version": new["format_version"],
            "documents": new["ntotal"],
            "vector_file": new.get("vector_file", {}).get("dtype", "none (no cached vectors: rebuild to rescore)"),
        }

    print_mapping("index migrated", run_or_exit(action), as_json)


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="the query")],
    index_dir: IndexDirOption,
    k: Annotated[int, typer.Option("--k", "-k", help="number of hits")] = 10,
    params: Annotated[
        str | None, typer.Option(help="search parameters of --index-dir's pipeline, e.g. nprobe=32")
    ] = None,
    compare: Annotated[
        list[str] | None,
        typer.Option(
            metavar="DIR|NAME=DIR",
            help="another index directory to search side by side, DIR or NAME=DIR (repeatable; NAME defaults to the "
            "folder's name); hits are marked against the reference's top-k",
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="with --compare: the pipeline the others are measured against (default: teacher if one "
            "has that name, else the first --compare)",
        ),
    ] = None,
    threads: Annotated[int | None, threads_option("query encoder threads")] = None,
    filter_: Annotated[
        str | None,
        typer.Option(
            "--filter",
            metavar="JSON",
            help='only documents whose metadata match, e.g. \'{"year": {"gte": 2015}, "lang": {"in": ["en", "de"]}}\' '
            "(equality, in, gt/gte/lt/lte on numbers; all must hold)",
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Search an index directory for one query; with --compare, search several and measure them against one."""
    from indexes.filters import parse_filter
    from search.cli.views import print_compare, print_search
    from search.pipeline import Pipeline, result_as_dict

    run_or_exit(lambda: check_search_options(k, compare, reference))
    where = run_or_exit(lambda: parse_filter(filter_))
    if compare:
        compared = run_or_exit(
            lambda: compare_pipelines(
                text, k, index_dir, compare, reference, parse_params(params), resolve_threads(threads), where
            )
        )
        if as_json:
            print_json(compared.to_dict())
        else:
            print_compare(console, compared)
        return

    def action() -> SearchResult:
        check_index_dir(index_dir)
        pipeline = Pipeline.load(index_dir, threads=resolve_threads(threads), search_params=parse_params(params))
        return pipeline.search(text, k, where=where)

    result = run_or_exit(action)
    if as_json:
        print_json(result_as_dict(result))
    else:
        print_search(console, text, result)


def check_search_options(k: int, compare: Sequence[str] | None, reference: str | None) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if reference is not None and not compare:
        raise ValueError("--reference picks one of the compared pipelines: give --compare DIR too")


def compare_sources(index_dir: Path, compare: Sequence[str]) -> list[PipelineSource]:
    """`--index-dir` and each `--compare` (DIR, or NAME=DIR when the text before the first `=` is a name) as named
    sources, the first `--index-dir`; a name defaults to the folder's. Refuses repeated names."""
    from search.sources import PipelineSource, duplicate_name_problems, parse_source

    sources = [PipelineSource(Path(index_dir).resolve().name, Path(index_dir))]
    sources += [parse_source(spec, bare_dirs=True) for spec in compare]
    problems = duplicate_name_problems(sources)
    if problems:
        raise ValueError("; ".join(problems) + ": name them apart with --compare NAME=DIR")
    return sources


def compare_pipelines(
    text: str,
    k: int,
    index_dir: Path,
    compare: Sequence[str],
    reference: str | None,
    search_params: dict[str, float],
    threads: int | None,
    where: MetadataFilter | None = None,
) -> CompareResult:
    """Check every index directory and the reference before loading any model (a teacher takes seconds), then
    search them all and measure each against the reference (`search_params`: --index-dir's pipeline only; the
    others use those stored with their index)."""
    from search.compare import choose_reference
    from search.pipeline import Pipeline
    from search.pipeline_set import PipelineSet

    sources = compare_sources(index_dir, compare)
    metas = [check_index_dir(source.index_dir) for source in sources]
    names = [source.name for source in sources]
    chosen = choose_reference([*names[1:], names[0]], reference)  # teacher, else the first --compare
    hashes = {source.name: meta.get("corpus_hash") for source, meta in zip(sources, metas, strict=True)}
    if None not in hashes.values() and len(set(hashes.values())) > 1:
        raise ValueError(
            f"these indexes hold different corpora ({', '.join(f'{n}: {h[:12]}' for n, h in hashes.items())}): "
            "their ids cannot be compared; give index folders built on the same corpus"
        )
    pipelines = {
        source.name: Pipeline.load(source.index_dir, threads=threads, search_params=search_params if i == 0 else None)
        for i, source in enumerate(sources)
    }
    for pipeline in pipelines.values():
        pipeline.search(text, k, where=where)  # untimed warm-up: the speed-ups leave out one-off first-query costs
    return PipelineSet(pipelines, reference=chosen).compare(text, k, where=where)


@app.command(name="eval")
def evaluate_command(
    index_dir: IndexDirOption,
    dataset: Annotated[str, typer.Option(help="the dataset the index was built on (needs qrels)")] = "scifact",
    split: Annotated[str, typer.Option(help="qrels split")] = "test",
    params: Annotated[str | None, typer.Option(help="search parameters, e.g. nprobe=32")] = None,
    teacher_index: Annotated[
        Path | None, typer.Option(help="the teacher's index dir: adds recall@10_vs_teacher (its exact top-10)")
    ] = None,
    threads: Annotated[int | None, threads_option("query encoder threads")] = None,
    as_json: AsJson = False,
) -> None:
    """Evaluate an index: nDCG@10, recall@100, MRR@10, recall vs exact (and vs teacher), latency, bytes."""
    from search.data.datasets import load_dataset
    from search.evaluation.evaluate import evaluate
    from search.pipeline import Pipeline

    def action() -> dict[str, Any]:
        for folder in (index_dir, teacher_index):
            if folder is not None:
                check_index_dir(folder)
        cores = resolve_threads(threads)
        pipeline = Pipeline.load(index_dir, threads=cores, search_params=parse_params(params))
        reference = Pipeline.load(teacher_index, threads=cores) if teacher_index else None
        return evaluate(pipeline, load_dataset(dataset), split=split, reference=reference, show_progress=True)

    print_mapping(f"evaluation of {index_dir}", run_or_exit(action), as_json)
