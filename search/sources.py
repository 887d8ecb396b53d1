"""Named index directories: `PipelineSource` and the one parser of `NAME=DIR` items (the server's pipelines, the
folders `semsearch search --compare` measures side by side)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
NAME_RULE = "[A-Za-z0-9_-]+ (letters, digits, '_' and '-')"
DEFAULT_NAME = "default"


class SourceError(ValueError):
    """`NAME=DIR` items that cannot be used; the message lists every problem."""


@dataclass(frozen=True)
class PipelineSource:
    """A pipeline to load: its name and index directory."""

    name: str
    index_dir: Path


def parse_source(spec: str, bare_dirs: bool = False) -> PipelineSource:
    """One `NAME=DIR` item (DIR with `~` expanded). With `bare_dirs`, an item that is not NAME=DIR (no name before an
    `=`) is a DIR named after its folder. Raises `SourceError` naming the problem."""
    name, sep, folder = spec.partition("=")
    if sep and NAME_PATTERN.match(name) and folder.strip():
        return PipelineSource(name, Path(folder.strip()).expanduser())
    if bare_dirs and spec.strip():
        folder_path = Path(spec.strip()).expanduser()
        return PipelineSource(folder_path.resolve().name, folder_path)
    if not sep or not folder.strip():
        raise SourceError(f"{spec!r} is not NAME=DIR")
    raise SourceError(f"pipeline name {name!r} must match {NAME_RULE}")


def parse_sources(specs: Sequence[str], bare_dirs: bool = False) -> list[PipelineSource]:
    """Every item as `parse_source` reads it; names must be unique. All problems are reported together in one
    `SourceError`."""
    sources: list[PipelineSource] = []
    problems: list[str] = []
    for spec in specs:
        try:
            sources.append(parse_source(spec, bare_dirs))
        except SourceError as err:
            problems.append(str(err))
    if problems:
        problems[-1] += " (expected NAME=DIR, e.g. teacher=indexes/t)"
    problems += duplicate_name_problems(sources)
    if problems:
        raise SourceError("; ".join(problems))
    return sources


def duplicate_name_problems(sources: Sequence[PipelineSource]) -> list[str]:
    """One line per name used more than once (empty when every name is unique)."""
    names = [source.name for source in sources]
    return [
        f"pipeline name {name!r} is used {names.count(name)} times"
        for name in dict.fromkeys(names)
        if names.count(name) > 1
    ]
