"""`semsearch serve`: the multi-pipeline HTTP server (see `search.serve`); the config is checked before it starts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from search.cli.base import app, check_index_dir, parse_params, run_or_exit, threads_option

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI


@app.command()
def serve(
    index_dir: Annotated[
        Path | None, typer.Option(help="index directory from `semsearch index`, served as pipeline 'default'")
    ] = None,
    pipeline: Annotated[
        list[str] | None,
        typer.Option("--pipeline", help="NAME=DIR, repeatable, e.g. --pipeline teacher=ix/t --pipeline small=ix/s"),
    ] = None,
    reference: Annotated[
        str | None, typer.Option(help="pipeline the others are compared with (default: teacher if loaded, else first)")
    ] = None,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    threads: Annotated[int | None, threads_option("onnxruntime / torch intra-op threads")] = None,
    workers_threads: Annotated[
        int | None, typer.Option(help="request worker threads (default: max_concurrency + 4)")
    ] = None,
    params: Annotated[str | None, typer.Option(help="search parameters for every pipeline, e.g. nprobe=32")] = None,
    evaluation_dataset: Annotated[
        str | None, typer.Option(help="dataset /evaluation evaluates on (default: the one in the indexes' meta.json)")
    ] = None,
    evaluation_split: Annotated[str, typer.Option(help="qrels split /evaluation evaluates on")] = "test",
    evaluate_on_startup: Annotated[
        bool,
        typer.Option(
            "--evaluate-on-startup",
            help="start the /evaluation job at startup (else POST /evaluation starts it; a GET never does)",
        ),
    ] = False,
    limit: Annotated[
        list[str] | None,
        typer.Option(
            "--limit",
            help="NAME=VALUE, repeatable: a server limit (max_body_bytes, max_batch, max_k, max_batch_hits, "
            "max_rescore_candidates, max_batch_tokens, micro_batch, max_concurrency, max_queue, request_timeout_s, "
            "coalesce_max, coalesce_wait_ms, ...); GET /pipelines shows those in force",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="extra Host header value to accept (repeatable; '*' for any, '*.example.org' for a domain's names)",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="SEMSEARCH_API_KEY",
            help="bearer token every API route requires (Authorization: Bearer KEY; not /health, /ready or the web "
            "page); required off loopback",
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None, typer.Option("--cors-origin", help="origin CORS allows (repeatable); none by default")
    ] = None,
    bench_dir: Annotated[
        Path | None,
        typer.Option(help="a `semsearch bench --out` folder: the /bench page draws its recall-vs-latency map"),
    ] = None,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="log one line per request (uvicorn's access log); off by default: it costs a fraction of a "
            "millisecond per request, and GET /metrics counts requests and errors per route",
        ),
    ] = False,
    writes: Annotated[
        bool,
        typer.Option(
            "--writes",
            help="accept writes: PUT /documents (upsert, encoded in the background) and DELETE /documents/ID; needs "
            "an API key; the index directories are opened for writes (one writer per directory)",
        ),
    ] = False,
    mmap: Annotated[
        bool,
        typer.Option(
            "--mmap",
            help="memory-map the indexes instead of reading them whole (an index bigger than RAM; IVF lists merged "
            "on disk by --engine ray are always read from their file); /pipelines shows resident vs on-disk bytes",
        ),
    ] = False,
) -> None:
    """Serve the web page (/ and /bench) and /search, /search/batch, /compare, /pipelines, /evaluation,
    /bench/results, /documents (writes with --writes) over HTTP (API docs at /docs), Prometheus metrics at /metrics,
    /health and /ready.

    The /evaluation summary is computed by a background job (202 with progress while it runs, never blocking
    searches), started by POST /evaluation or at startup with --evaluate-on-startup; a GET never starts it.
    Every index and encoder is loaded before the server starts: a broken one is a one-line error and exit status 2.
    """
    import uvicorn

    from search.compare import choose_reference
    from search.serve.app import create_app
    from search.serve.config import Security, ServerConfig, check_port, parse_limits
    from search.sources import SourceError, parse_sources

    def action() -> FastAPI:
        check_port(host, port)
        try:
            sources = parse_sources(pipeline or [])
        except SourceError as err:
            raise SourceError(f"bad --pipeline: {err}") from None
        config = ServerConfig(
            index_dir=index_dir,
            pipelines=tuple(sources),
            reference=reference,
            threads=threads,
            workers_threads=workers_threads,
            search_params=parse_params(params),
            evaluation_dataset=evaluation_dataset,
            evaluation_split=evaluation_split,
            evaluate_on_startup=evaluate_on_startup,
            limits=parse_limits(limit or []),
            security=Security(
                host=host,
                allowed_hosts=tuple(allowed_host or ()),
                api_key=api_key,
                cors_origins=tuple(cors_origin or ()),
            ),
            bench_dir=bench_dir,
            mmap=mmap,
            writes=writes,
        )
        choose_reference([source.name for source in config.sources()], reference)
        for source in config.sources():  # fail fast, before the server starts, on a missing or broken index
            check_index_dir(source.index_dir)
        # loads every index and encoder (and the bench folder) now: errors are one line, exit 2
        return create_app(config, preload=True)

    uvicorn.run(run_or_exit(action), host=host, port=port, access_log=access_log)
