"""`semsearch bench`, `bench-compression` and `bench-scale`: the benchmarks (see `search.bench`).

Each writes under `runs/` unless given `--out`: the committed figures in `benchmarks/` change only when a
`benchmarks/*/run.sh` names its folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from search.bench.ann.spec import DEFAULT_INDEXES as ANN_INDEXES
from search.bench.scale.spec import DEFAULT_SIZES
from search.cli.base import AsJson, app, console, parse_params, print_json, print_mapping, run_or_exit, threads_option
from search.cli.choices import Generator, NoiseMode
from search.jobs.main_job import MainJobSpec
from semsearch_common.threads import resolve_threads

RUNS_DIR = MainJobSpec().runs_dir  # where every bench command writes by default, as the main job does


@app.command(name="bench-compression")
def bench_compression(
    student_fp32: Annotated[str, typer.Option(help="the distilled student (sentence-transformers folder)")],
    student_int8: Annotated[str, typer.Option(help="its int8 ONNX folder (from `semsearch quantize`, int8/)")],
    out: Annotated[Path, typer.Option("--out", help="where summary.json, summary.md and pipelines.json go")] = (
        RUNS_DIR / "bench-compression"
    ),
    dataset: Annotated[str, typer.Option(help="dataset with qrels")] = "scifact",
    split: Annotated[str, typer.Option(help="qrels split to evaluate on")] = "test",
    teacher: Annotated[str, typer.Option(help="teacher encoder spec")] = "teacher",
    minilm: Annotated[str, typer.Option(help="off-the-shelf baseline encoder spec")] = "minilm",
    threads: Annotated[int | None, threads_option("torch and onnxruntime threads")] = None,
    throughput_docs: Annotated[int, typer.Option(help="documents timed for corpus throughput")] = 128,
    doc_tower: Annotated[
        str | None, typer.Option(help="int8 base student that encodes documents for a student distilled against it")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Teacher vs MiniLM vs distilled student (fp32, int8, asymmetric int8), side by side, in one run."""
    from search.bench.compression import CompressionBenchSpec, run_compression_bench

    def action() -> dict[str, Any]:
        spec = CompressionBenchSpec(
            student=student_fp32,
            student_int8=student_int8,
            dataset=dataset,
            split=split,
            teacher=teacher,
            minilm=minilm,
            threads=resolve_threads(threads),
            throughput_docs=throughput_docs,
            doc_tower=doc_tower,
        )
        summary = run_compression_bench(spec, out, show_progress=True)
        return {key: value for key, value in summary.items() if not isinstance(value, dict)}

    print_mapping("compression benchmark", run_or_exit(action), as_json)


@app.command()
def bench(
    encoder: Annotated[
        list[str],
        typer.Option(
            metavar="[LABEL=]SPEC[@DOCSPEC][^FP32LABEL]",
            help="an encoder to benchmark (repeat): a query-encoder spec with an optional label, @docspec (documents "
            "by another model) and ^fp32label (its fp32 counterpart), e.g. --encoder teacher --encoder st=DIR "
            "--encoder st-int8=ONNXDIR^st --encoder asym=ONNXDIR@teacher",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="folder for results.json/csv/md, plots, loss_split.json")] = (
        RUNS_DIR / "bench"
    ),
    dataset: Annotated[str, typer.Option(help="dataset with qrels")] = "scifact",
    index_factory: Annotated[
        list[str] | None,
        typer.Option(
            "--index",
            metavar="FACTORY",
            help=f"a FAISS factory (repeat), e.g. --index Flat --index IVF256,PQ48 (default: {', '.join(ANN_INDEXES)})",
        ),
    ] = None,
    sweep: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME=V1,V2,...",
            help="search-parameter values to sweep (repeat), e.g. --sweep nprobe=1,4,16 --sweep efSearch=16,64",
        ),
    ] = None,
    teacher: Annotated[str, typer.Option(help="reference encoder: its exact top-10 is the ground truth")] = "teacher",
    doc_encoder: Annotated[
        str | None, typer.Option(help="document encoder for entries ending in a bare '@' (default: the teacher)")
    ] = None,
    budget_ms: Annotated[float | None, typer.Option(help="latency budget: total (encode + search) ms p50")] = None,
    budget_bytes: Annotated[float | None, typer.Option(help="memory budget: index bytes per document")] = None,
    split: Annotated[str, typer.Option(help="qrels split to evaluate on")] = "test",
    threads: Annotated[int | None, threads_option("torch, onnxruntime and FAISS threads")] = None,
    repeats: Annotated[int, typer.Option(help="searches per query; the fastest counts")] = 3,
    max_queries: Annotated[int | None, typer.Option(help="use only the first N queries of the split")] = None,
    train_sample: Annotated[int, typer.Option(help="max vectors used to train each index")] = 100_000,
    seed: Annotated[int, typer.Option(help="seed for training samples and k-means")] = 0,
    as_json: AsJson = False,
) -> None:
    """Recall vs latency of every encoder x index x search-parameter setting, with Pareto frontier and budget pick."""
    from search.bench.ann import best_under_budget, format_params, make_bench_spec, run_bench

    def action() -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        spec = make_bench_spec(encoder, index_factory or ANN_INDEXES, sweep or (), doc_encoder=doc_encoder,
                               teacher=teacher, dataset=dataset, split=split, threads=resolve_threads(threads),
                               repeats=repeats, max_queries=max_queries,
                               budget_ms=budget_ms, budget_bytes=budget_bytes, train_sample=train_sample, seed=seed,
                               show_progress=True)  # fmt: skip
        rows = run_bench(spec, out)
        budgeted = budget_ms is not None or budget_bytes is not None
        return rows, best_under_budget(rows, budget_ms, budget_bytes) if budgeted else None

    rows, budget = run_or_exit(action)
    if as_json:
        print_json({"out": str(out), "rows": rows, "budget": budget})
        return
    table = Table(title=f"recall vs latency ({out})")
    for column in ("encoder", "index", "params", "R@10 vs teacher", "nDCG@10", "total ms p50", "B/vec", "pareto"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["encoder"], row["index"], format_params(row["params"]), f"{row['recall@10_vs_teacher']:.3f}",
                      f"{row['ndcg@10']:.4f}", f"{row['total_ms_p50']:.3g}", f"{row['bytes_per_vector']:.4g}",
                      "*" if row["pareto"] else "")  # fmt: skip
    console.print(table)
    if budget is not None:
        console.print(budget["message"])


@app.command(name="bench-scale")
def bench_scale(
    vectors: Annotated[Path, typer.Option(help="(n, dim) .npy of real embeddings the corpus is grown from")],
    size: Annotated[
        list[int] | None,
        typer.Option(metavar="N", help=f"a corpus size (repeat) (default: {', '.join(map(str, DEFAULT_SIZES))})"),
    ] = None,
    index_factory: Annotated[
        list[str] | None,
        typer.Option(
            "--index",
            help="FAISS factory, repeatable; {nlist} ~ 4*sqrt(N), {m} = dim/8 "
            "(default: Flat, IVF{nlist},PQ{m}, IVF{nlist},PQ{m},RFlat, HNSW32)",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="where scale.json/csv/md and the plots go")] = (
        RUNS_DIR / "bench-scale"
    ),
    queries: Annotated[int, typer.Option(help="queries scored for recall against exact search")] = 1000,
    latency_queries: Annotated[int, typer.Option(help="of those, queries timed one at a time")] = 200,
    repeats: Annotated[int, typer.Option(help="latency repeats (the best p50 is kept)")] = 2,
    threads: Annotated[int | None, threads_option("FAISS and BLAS threads")] = None,
    generator: Annotated[
        Generator, typer.Option(help="mix (points between real neighbours) or noise (noisy copies of one source)")
    ] = "mix",
    target_cosine: Annotated[
        float | None,
        typer.Option(help="mean cosine of a vector to its noise-free point (default: 0.87 for mix, 0.85 for noise)"),
    ] = None,
    noise: Annotated[NoiseMode, typer.Option(help="noise shape: data (source covariance) or isotropic")] = "data",
    mix_neighbours: Annotated[int, typer.Option(help="mix: partners are drawn among this many nearest sources")] = 50,
    mix_alpha: Annotated[float, typer.Option(help="mix: Dirichlet concentration of the weights")] = 1.0,
    seed: Annotated[int, typer.Option(help="seed for the vectors, training sample and k-means")] = 0,
    train_sample: Annotated[int, typer.Option(help="max vectors used to train IVF/PQ")] = 200_000,
    pq_m: Annotated[int | None, typer.Option(help="PQ bytes per vector for {m} (default dim/8)")] = None,
    params: Annotated[str | None, typer.Option(help="search parameter overrides, e.g. nprobe=32")] = None,
    skip: Annotated[list[str] | None, typer.Option(help="FACTORY@N pair not to run, repeatable")] = None,
    note: Annotated[str, typer.Option(help="free text recorded with the results (e.g. machine load)")] = "",
    index_dirs: Annotated[
        bool,
        typer.Option(
            "--index-dirs",
            help="also save each index as an index directory (fp16 vector file, SQLite document store) and measure it "
            "in a fresh process as `semsearch serve` opens it: resident bytes per vector, warm and cold-page latency",
        ),
    ] = False,
    warm_queries: Annotated[int, typer.Option(help="with --index-dirs: queries run before memory is read")] = 1000,
    cold_queries: Annotated[
        int, typer.Option(help="with --index-dirs: queries timed with the vector file's pages evicted")
    ] = 200,
    serve_mmap: Annotated[bool, typer.Option("--serve-mmap", help="with --index-dirs: open as serve --mmap")] = False,
    as_json: AsJson = False,
) -> None:
    """Latency, recall@10, memory and build time against N for Flat, HNSW and IVF-PQ, on vectors grown from real
    embeddings (mixes of real neighbours, or noisy copies); writes scale.json/csv/md and log-log plots."""
    from search.bench.scale import DEFAULT_INDEXES, ScaleBenchSpec, row_summary, run_scale_bench

    def action() -> dict[str, Any]:
        spec = ScaleBenchSpec(
            vectors=vectors,
            sizes=tuple(size) if size else DEFAULT_SIZES,
            indexes=tuple(index_factory) if index_factory else DEFAULT_INDEXES,
            queries=queries,
            latency_queries=latency_queries,
            repeats=repeats,
            threads=resolve_threads(threads),
            generator=generator.value,
            target_cosine=target_cosine,
            noise=noise.value,
            mix_neighbours=mix_neighbours,
            mix_alpha=mix_alpha,
            seed=seed,
            train_sample=train_sample,
            pq_m=pq_m,
            search_params=parse_params(params),
            skip=tuple(skip or ()),
            note=note,
            index_dirs=index_dirs,
            warm_queries=warm_queries,
            cold_queries=cold_queries,
            serve_mmap=serve_mmap,
        )
        result = run_scale_bench(spec, out)
        return {**{f"N={row['n']} {row['factory']}": row_summary(row) for row in result["rows"]}, "out": str(out)}

    print_mapping("scale benchmark", run_or_exit(action), as_json)
