"""What `semsearch bench` measures: the encoder entries, index factories and search-parameter sweep, parsed from
the command-line strings into a frozen `BenchSpec`, and the parameter grid of each factory."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from indexes.faiss_index import DEFAULT_TRAIN_SAMPLE, SEARCH_PARAMS, default_search_params
from semsearch_common.threads import available_cores

TOP_K = 10  # the timed search: top-10, as a search engine page (and ann-benchmarks) asks for
RECALL_K = 100  # an untimed second pass for recall@100
BATCH = 64  # batch size of the throughput (QPS) measurement

DEFAULT_INDEXES = ("Flat",)
_LABEL = re.compile(r"^[\w.+:-]+$")


@dataclass(frozen=True)
class EncoderEntry:
    """One encoder to benchmark: a label, the query-encoder spec, an optional document-encoder spec
    (asymmetric mode) and an optional fp32 counterpart label (for the int8 part of the loss split)."""

    label: str
    spec: str
    doc_spec: str | None = None
    fp32_of: str | None = None


@dataclass(frozen=True)
class BenchSpec:
    """What `run_bench` measures and how; build it from the command-line entries with `make_bench_spec`.
    `threads` defaults to every core this process may use."""

    encoders: tuple[EncoderEntry, ...]
    indexes: tuple[str, ...] = DEFAULT_INDEXES
    sweep: tuple[tuple[str, tuple[float, ...]], ...] = ()
    dataset: str = "scifact"
    split: str = "test"
    teacher: str = "teacher"
    threads: int = field(default_factory=available_cores)
    repeats: int = 3
    max_queries: int | None = None
    budget_ms: float | None = None
    budget_bytes: float | None = None
    train_sample: int = DEFAULT_TRAIN_SAMPLE
    seed: int = 0
    show_progress: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        if not self.encoders:
            raise ValueError("no encoders to benchmark: give at least one, e.g. --encoder teacher")
        if not self.indexes:
            raise ValueError("no indexes to benchmark: give at least one, e.g. --index Flat")
        for name, value in (("threads", self.threads), ("repeats", self.repeats), ("max_queries", self.max_queries)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name, value in (("budget_ms", self.budget_ms), ("budget_bytes", self.budget_bytes)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        labels = [entry.label for entry in self.encoders]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"duplicate encoder labels {duplicates}: give each entry its own label=spec")
        for entry in self.encoders:
            if entry.fp32_of is not None and entry.fp32_of not in labels:
                raise ValueError(
                    f"encoder {entry.label!r} names fp32 counterpart {entry.fp32_of!r}, which is not an entry; "
                    f"labels: {', '.join(labels)}"
                )

    def sweep_dict(self) -> dict[str, tuple[float, ...]]:
        return dict(self.sweep)

    def teacher_label(self) -> str | None:
        """The label of the symmetric entry that is the teacher itself, if one is benchmarked."""
        return next((e.label for e in self.encoders if e.spec == self.teacher and e.doc_spec is None), None)


def parse_encoders(items: Sequence[str], default_doc_spec: str = "teacher") -> tuple[EncoderEntry, ...]:
    """Parse entries `label=spec[@docspec][^fp32label]`, one per `--encoder`; a bare `spec` is its own label, a bare
    `@` means `default_doc_spec`."""
    entries = []
    for item in (part.strip() for part in items):
        label, sep, rest = item.partition("=")
        if not sep:
            label, rest = "", item
        spec, *suffixes = re.split(r"(?=[@^])", rest)
        doc_spec = fp32_of = None
        for suffix in suffixes:
            marker, value = suffix[0], suffix[1:].strip()
            if marker == "@":
                if doc_spec is not None:
                    raise ValueError(f"encoder entry {item!r} has two @docspec parts; give one")
                doc_spec = value or default_doc_spec
            else:
                if fp32_of is not None or not value:
                    raise ValueError(f"encoder entry {item!r}: write one ^fp32label naming another entry's label")
                fp32_of = value
        spec, label = spec.strip(), label.strip() or spec.strip()
        if not spec:
            raise ValueError(f"encoder entry {item!r} has no spec: use label=spec[@docspec][^fp32label]")
        if not _LABEL.match(label):
            raise ValueError(f"encoder label {label!r} may hold only letters, digits and . + : - _")
        entries.append(EncoderEntry(label, spec, None if doc_spec == spec else doc_spec, fp32_of))
    if not entries:
        raise ValueError("no encoders given: use --encoder label=spec[@docspec][^fp32label], e.g. --encoder teacher")
    return tuple(entries)


def doc_encoder_name(entry: EncoderEntry, entries: Sequence[EncoderEntry]) -> str:
    """What encodes `entry`'s documents: its own label, the label of a symmetric entry with that spec, or the spec."""
    if entry.doc_spec is None:
        return entry.label
    return next((e.label for e in entries if e.spec == entry.doc_spec and e.doc_spec is None), entry.doc_spec)


def parse_indexes(items: Sequence[str]) -> tuple[str, ...]:
    """The factories, one per `--index` (`Flat`, `IVF256,PQ48`), stripped, each once, in order."""
    factories = tuple(dict.fromkeys(part.strip() for part in items if part.strip()))
    if not factories:
        raise ValueError("no index factories given: use --index FACTORY, e.g. --index Flat --index IVF256,PQ48")
    return factories


def parse_sweep(items: Sequence[str]) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """Parse `NAME=V1,V2,...` items, one per `--sweep` (`nprobe=1,2,4`, `efSearch=16,32`), into (name, values)
    pairs, naming what is wrong."""
    sweep: dict[str, tuple[float, ...]] = {}
    for item in filter(None, (part.strip() for part in items)):
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"bad sweep item {item!r}: use NAME=V1,V2,... with NAME in {', '.join(SEARCH_PARAMS)}")
        if name not in SEARCH_PARAMS:
            raise ValueError(f"unknown search parameter {name!r} in --sweep: use one of {', '.join(SEARCH_PARAMS)}")
        if name in sweep:
            raise ValueError(f"search parameter {name!r} appears in two --sweep items; list all its values in one")
        numbers = []
        for value in filter(None, (v.strip() for v in values.split(","))):
            try:
                number = float(value)
            except ValueError as err:
                raise ValueError(f"sweep value {value!r} of {name} is not a number") from err
            if not number >= 1:
                raise ValueError(f"sweep value {value} of {name} must be >= 1")
            numbers.append(clean_number(number))
        if not numbers:
            raise ValueError(f"sweep item {item!r} lists no values: use {name}=V1,V2,...")
        sweep[name] = tuple(dict.fromkeys(numbers))
    return tuple(sweep.items())


def clean_number(value: float) -> float:
    """Whole numbers as int (so `nprobe=4`, not `nprobe=4.0`, in the outputs), others as float."""
    return int(value) if float(value).is_integer() else float(value)


def make_bench_spec(
    encoders: Sequence[str],
    indexes: Sequence[str] = DEFAULT_INDEXES,
    sweep: Sequence[str] = (),
    doc_encoder: str | None = None,
    teacher: str = "teacher",
    **options: Any,
) -> BenchSpec:
    """A `BenchSpec` from the command-line entries (see `parse_encoders`, `parse_indexes`, `parse_sweep`)."""
    return BenchSpec(
        encoders=parse_encoders(encoders, default_doc_spec=doc_encoder or teacher),
        indexes=parse_indexes(indexes),
        sweep=parse_sweep(sweep),
        teacher=teacher,
        **options,
    )


def sweep_grid(factory: str, sweep: Mapping[str, Sequence[float]]) -> list[tuple[dict[str, float], bool]]:
    """The parameter settings to measure for one factory, each with whether it is the default setting.

    Only parameters that apply are swept (nprobe for IVF, efSearch for HNSW, k_factor for RFlat, oversample for
    lossy codes rescored from the vector file an index directory keeps by default), as a cross product; the others
    keep their defaults. The default setting is always included (the loss split needs it);
    nprobe values above the list count are skipped as they would repeat nprobe = nlist.
    """
    defaults = {name: clean_number(value) for name, value in default_search_params(factory, True).items()}
    values: dict[str, list[float]] = {}
    for name in defaults:
        wanted = list(sweep.get(name, ()))
        if name == "nprobe" and (nlist := re.search(r"IVF(\d+)", factory)):
            wanted = [v for v in wanted if v <= int(nlist.group(1))]
        values[name] = wanted or [defaults[name]]
    grid = [dict(zip(values, combo, strict=True)) for combo in itertools.product(*values.values())]
    if defaults not in grid:
        grid.append(dict(defaults))
    return [(params, params == defaults) for params in grid]


def format_params(params: Mapping[str, float]) -> str:
    """`nprobe=4,k_factor=2`, or `-` for an index without search parameters."""
    return ",".join(f"{name}={value}" for name, value in params.items()) or "-"
