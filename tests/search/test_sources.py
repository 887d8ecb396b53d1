"""`NAME=DIR` items: the one parser of the server's `--pipeline` and `semsearch search --compare`."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.sources import PipelineSource, SourceError, duplicate_name_problems, parse_source, parse_sources


def test_parse_sources_reports_every_problem_together():
    assert parse_sources(["t-1_x=some/dir", "b= ~/x "]) == [
        PipelineSource("t-1_x", Path("some/dir")),
        PipelineSource("b", Path("~/x").expanduser()),
    ]
    with pytest.raises(SourceError) as err:
        parse_sources(["good=dir", "bad name=dir", "nodir", "empty=", "good=other"])
    message = str(err.value)
    for part in (
        "'bad name' must match [A-Za-z0-9_-]+",
        "'nodir' is not NAME=DIR",
        "'empty=' is not NAME=DIR",
        "'good' is used 2 times",
        "expected NAME=DIR",
    ):
        assert part in message
    assert isinstance(err.value, ValueError)  # a user error the CLI prints in one line


def test_bare_dirs_are_named_after_their_folder(tmp_path):
    folder = tmp_path / "small-ix"
    assert parse_source(str(folder), bare_dirs=True) == PipelineSource("small-ix", folder)
    assert parse_source(f"s={folder}", bare_dirs=True) == PipelineSource("s", folder)
    odd = tmp_path / "a b=c"  # the text before '=' is no name: the whole item is a folder
    assert parse_source(str(odd), bare_dirs=True) == PipelineSource("a b=c", odd)
    with pytest.raises(SourceError, match="is not NAME=DIR"):
        parse_source(str(folder))
    with pytest.raises(SourceError, match="'' is not NAME=DIR"):
        parse_source("", bare_dirs=True)


def test_duplicate_names_are_counted():
    sources = [PipelineSource(name, Path("d")) for name in ("a", "b", "a", "c", "a", "b")]
    assert duplicate_name_problems(sources) == [
        "pipeline name 'a' is used 3 times",
        "pipeline name 'b' is used 2 times",
    ]
    assert duplicate_name_problems(sources[:2]) == []
