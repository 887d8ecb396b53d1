"""What `semsearch serve` runs with: the pipelines to load, the work limits and the security settings.

One source of truth for every server default: `ServerLimits` (bounded work per request and per server) and
`Security` (who may call the API) are frozen dataclasses; `ServerConfig` holds both. The CLI and the tests build a
`ServerConfig`; `GET /pipelines` shows the limits in force.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from search.evaluation.side_by_side import EvaluationSpec
from search.sources import DEFAULT_NAME, PipelineSource, duplicate_name_problems

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
ANY_HOST = "*"


@dataclass(frozen=True)
class ServerLimits:
    """Bounded work per request and per server. Every request that would exceed one is refused before any work
    (413 for the body, 422 for the rest, 503 with Retry-After when the server is full)."""

    max_body_bytes: int = 1 << 20  # request bodies above this are refused with 413 before they are parsed
    max_query_chars: int = 10_000  # characters per query
    max_batch: int = 256  # queries per /search/batch request
    max_k: int = 1000  # hits per query
    max_batch_hits: int = 25_600  # queries x k per request (256 queries at k = 100)
    max_rescore_candidates: int = 262_144  # queries x k x k_factor per request, for `,RFlat` indexes
    max_batch_tokens: int = 16_384  # tokens per request, counted after truncation to the encoder's max length
    micro_batch: int = 32  # long batches are encoded this many queries at a time (deadline checked in between)
    # Units of model work at once, server-wide: a /search/batch request or a coalesced batch of single queries. 4
    # serves more requests a second than 1 (one batch at a time) at the same lone-client latency (compare settings
    # with the load harness in benchmarks/reliability/, `--limit NAME=VALUE` in its SERVER_ARGS).
    max_concurrency: int = 4
    max_queue: int = 256  # requests waiting for a slot; more are answered 503 with Retry-After
    retry_after_s: int = 1  # Retry-After of a 503
    request_timeout_s: float = 30.0  # a request's deadline: work stops (504) when it passes or the client has gone
    # Concurrent single queries to one pipeline encoded together, at most this many. 8: a MiniLM-size int8 encoder
    # is cheapest per query at a few queries a batch and pays for padding to the longest beyond that; 8 gave more
    # req/s and a lower p99 than 32 under load (same harness).
    coalesce_max: int = 8
    # How long the batcher waits for more queries after the first. 0 takes only what is already queued, so a lone
    # client never waits; a wait gains nothing under load, where batches already fill up while the slots are busy.
    coalesce_wait_ms: float = 0.0
    # A single query to an idle pipeline whose recent queries took at most this long runs in the event loop instead
    # of a worker thread (the hand-off costs a fraction of a millisecond); 0 sends every query to a thread.
    inline_max_ms: float = 1.0
    max_write_docs: int = 1000  # documents per PUT /documents (the body's size is bounded by max_body_bytes too)
    max_doc_chars: int = 100_000  # characters of a written document's text (the encoder reads its first tokens)
    max_pending: int = 100_000  # upserts waiting to be encoded; a write beyond gets 503 with Retry-After

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name == "request_timeout_s":  # any positive deadline, e.g. 0.5 s (tests use short ones)
                if not value > 0:
                    raise ValueError(f"server limit {name} must be > 0, got {value}")
                continue
            minimum = 0 if name in ("coalesce_wait_ms", "inline_max_ms") else 1
            if value < minimum:
                raise ValueError(f"server limit {name} must be >= {minimum}, got {value}")

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bracketed(host: str) -> str:
    """An IPv6 address as a Host header writes it, `[::1]`; other names unchanged."""
    if host.startswith("[") or ":" not in host:
        return host
    try:
        return f"[{ipaddress.IPv6Address(host)}]"
    except ValueError:
        return host


@dataclass(frozen=True)
class Security:
    """Who may call the API. Safe by default: JSON-only POST bodies, Host checked against the bind address (DNS
    rebinding), CORS off, and a bearer token required when the server binds to a non-loopback address."""

    host: str = "127.0.0.1"  # the bind address; the Host header must name it (or a loopback name when loopback)
    allowed_hosts: tuple[str, ...] = ()  # extra Host header values accepted ("*" accepts any)
    api_key: str | None = None  # bearer token for every route, when set
    cors_origins: tuple[str, ...] = ()  # origins allowed by CORS; none by default

    def __post_init__(self) -> None:
        for name in self.allowed_hosts:
            if "*" in name[1:] or (name.startswith("*") and name != ANY_HOST and not name.startswith("*.")):
                raise ValueError(
                    f"--allowed-host {name!r} is not a host name: give a name, '*' (any host) or '*.example.org' "
                    "(every name under a domain)"
                )
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("--api-key must not be empty")
        if not is_loopback(self.host) and self.api_key is None:
            raise ValueError(
                f"binding to {self.host} (not loopback) needs an API key: give --api-key KEY or set SEMSEARCH_API_KEY"
            )

    def host_names(self) -> tuple[str, ...]:
        """Host header values (without port) the server answers."""
        names = (self.host, *LOOPBACK_NAMES) if is_loopback(self.host) else (self.host,)
        return tuple(dict.fromkeys((*names, *self.allowed_hosts)))

    def trusted_hosts(self) -> tuple[str, ...]:
        """`host_names` as Host headers carry them (lower case, IPv6 addresses in brackets): what
        `TrustedHostMiddleware` matches."""
        return tuple(dict.fromkeys(bracketed(name.strip().lower()) for name in self.host_names()))


@dataclass(frozen=True)
class ServerConfig:
    """What the server loads at startup: `index_dir` (served as pipeline `default`) and/or named `pipelines`."""

    index_dir: Path | None = None
    pipelines: tuple[PipelineSource, ...] = ()
    reference: str | None = None
    threads: int | None = None
    workers_threads: int | None = None
    search_params: dict[str, float] = field(default_factory=dict)
    evaluation_dataset: str | None = None
    evaluation_split: str = "test"
    evaluate_on_startup: bool = False
    limits: ServerLimits = field(default_factory=ServerLimits)
    security: Security = field(default_factory=Security)
    bench_dir: Path | None = None  # a `semsearch bench --out` folder, served at GET /bench/results for the /bench page
    mmap: bool = False  # memory-map every index (an index bigger than RAM is served without reading it whole)
    writes: bool = False  # PUT/DELETE /documents (needs an API key; the directories are opened for writes)

    def __post_init__(self) -> None:
        if not self.sources():
            raise ValueError("no pipelines to serve: give --index-dir DIR or --pipeline NAME=DIR")
        if self.writes and self.security.api_key is None:
            raise ValueError("--writes needs an API key (writes change the indexes): give --api-key KEY or set "
                             "SEMSEARCH_API_KEY")  # fmt: skip
        if self.writes and self.mmap:
            raise ValueError("--writes cannot be combined with --mmap: a memory-mapped index is read-only")
        problems = duplicate_name_problems(self.sources())
        if problems:
            raise ValueError("; ".join(problems))
        for name in ("threads", "workers_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")

    def sources(self) -> tuple[PipelineSource, ...]:
        single = (PipelineSource(DEFAULT_NAME, Path(self.index_dir)),) if self.index_dir is not None else ()
        return single + tuple(self.pipelines)

    def evaluation(self) -> EvaluationSpec:
        """What `/evaluation` evaluates on: `evaluation_dataset` (None: the indexes' own) and `evaluation_split`."""
        return EvaluationSpec(dataset=self.evaluation_dataset, split=self.evaluation_split)


def parse_limits(items: list[str] | tuple[str, ...]) -> ServerLimits:
    """`--limit NAME=VALUE` items as `ServerLimits` (the rest keep their defaults); names are checked."""
    allowed = ServerLimits.__dataclass_fields__
    values: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in allowed:
            raise ValueError(f"bad --limit {item!r}: expected NAME=VALUE with NAME one of {', '.join(allowed)}")
        kind = float if allowed[name].type in ("float", float) else int
        try:
            values[name] = kind(text)
        except ValueError as err:
            expected = "an integer" if kind is int else "a number"
            raise ValueError(f"bad --limit {item!r}: {text!r} is not {expected}") from err
    return ServerLimits(**values)


def check_port(host: str, port: int) -> None:
    """Refuse a port outside 1..65535 or one another process already holds on `host`, in one line each."""
    import socket

    if not 1 <= port <= 65535:
        raise ValueError(f"--port {port} is not a TCP port: give 1..65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ValueError(
                f"cannot listen on {host}:{port}: {err.strerror}; choose another --port or --host"
            ) from err
