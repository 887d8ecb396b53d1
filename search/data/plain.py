"""A user's own corpus: a JSONL, CSV or TSV file, or a folder of .txt files.

The readers are strict. Every bad record is reported with its file and line (with `BadRecords("skip")` it is left
out and counted instead): a line that is not UTF-8 or not a JSON object, a missing field, a field of the wrong type, an
empty text, a duplicate id, a CSV row with the wrong number of fields or broken quoting.

Types (JSONL): an id is a string or an integer (stored as its decimal string); a text is a string; a title is a
string, null or absent. Anything else (a list, an object, a number as text, a float or boolean id) is a bad record.
A text that is empty after removing whitespace and invisible characters (zero-width spaces, BOMs) counts as empty.

CSV/TSV: a header row names the columns; fields may be quoted and span lines. An unterminated quote is refused, not
allowed to swallow the rest of the file: the csv module's strict mode catches a quote that reaches the end of the
file or is followed by text, and a quoted field spanning lines is refused when one of its continuation lines reads as
a row of its own (as many fields as the header, and an id shaped like the record's id, e.g. digits for digits).
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from indexes.filters import check_metadata, scalar_metadata
from search.data.records import BadRecords, DatasetError, Document, fail_on_bad_records, is_blank

logger = logging.getLogger(__name__)

CORPUS_FORMATS = ("jsonl", "csv", "tsv", "txt-folder")


def iter_lines(path: Path, bad: BadRecords | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line, decoded as UTF-8 (a BOM on the first line is dropped); a line that is not
    UTF-8 is a bad record."""
    bad = fail_on_bad_records(bad)
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if line_no == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                yield line_no, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad.report(
                    f"{path}:{line_no}",
                    f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1}; save the file as UTF-8)",
                )


def iter_jsonl(path: Path, bad: BadRecords | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of every non-blank line; a line that is not a JSON object is a bad record."""
    bad = fail_on_bad_records(bad)
    for line_no, line in iter_lines(path, bad):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            bad.report(f"{path}:{line_no}", f"malformed JSON ({err.msg})")
            continue
        if not isinstance(record, dict):
            bad.report(f"{path}:{line_no}", f"expected a JSON object, got {json_type(record)}")
            continue
        yield line_no, record


def json_type(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)


def record_id(value: object, field: str) -> str:
    """A record id as a string: strings (not blank) and integers are accepted; raises ValueError saying why not."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"id field {field!r} must be a string or an integer, got {json_type(value)}")
    if is_blank(value):
        raise ValueError(f"id field {field!r} is empty")
    return value.strip()


def record_text(value: object, field: str, optional: bool = False) -> str:
    """A text field: a string (an optional one may also be null); raises ValueError saying why not."""
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{field!r} must be a string, got {json_type(value)}")
    return value.strip()


class _Documents:
    """Collects documents, reporting bad ones (empty text, duplicate id) with where they are."""

    def __init__(self, bad: BadRecords, strict_metadata: bool = False) -> None:
        self.bad = bad
        self.docs: list[Document] = []
        self.first_seen: dict[str, str] = {}
        self.strict_metadata = strict_metadata
        self.dropped_metadata = 0

    def add(
        self, where: str, doc_id: object, title: object, text: object, names: tuple[str, str, str],
        metadata: object = None,
    ) -> None:  # fmt: skip
        id_field, text_field, title_field = names
        try:
            title_s = record_text(title, title_field, optional=True)
            doc = Document(record_id(doc_id, id_field), title_s, record_text(text, text_field), self._meta(metadata))
        except ValueError as err:
            self.bad.report(where, str(err))
            return
        if is_blank(doc.text):
            self.bad.report(where, f"document {doc.id!r} has an empty text")
        elif doc.id in self.first_seen:
            self.bad.report(where, f"duplicate document id {doc.id!r} (first at {self.first_seen[doc.id]})")
        else:
            self.first_seen[doc.id] = where
            self.docs.append(doc)

    def _meta(self, metadata: object) -> dict[str, Any] | None:
        """A record's metadata: checked (strict: a bad value is a bad record), or its scalar entries (a BEIR
        `metadata` object may nest: nested entries are left out, and counted)."""
        if metadata is None:
            return None
        if self.strict_metadata:
            return check_metadata(metadata) or None
        kept, dropped = scalar_metadata(metadata)
        self.dropped_metadata += len(dropped)
        return kept or None

    def result(self, source: Path) -> tuple[Document, ...]:
        if self.dropped_metadata:
            logger.info("%s: left out %d metadata entries that are not strings, numbers or booleans", source,
                        self.dropped_metadata)  # fmt: skip
        if not self.docs:
            skipped = f" ({self.bad.skipped} bad records skipped)" if self.bad.skipped else ""
            raise DatasetError(f"{source}: the corpus is empty{skipped}")
        return tuple(self.docs)


def load_jsonl_corpus(
    path: Path,
    id_field: str = "_id",
    text_field: str = "text",
    title_field: str | None = "title",
    bad: BadRecords | None = None,
    strict_metadata: bool = False,
) -> tuple[Document, ...]:
    """Read a JSONL corpus; `title_field` may be absent from records (or None to ignore titles). A record's
    `metadata` object is kept (`strict_metadata`: checked, a bad one is a bad record; else its scalar entries)."""
    collected = _Documents(fail_on_bad_records(bad), strict_metadata)
    names = (id_field, text_field, title_field or "title")
    for line_no, record in iter_jsonl(path, collected.bad):
        where = f"{path}:{line_no}"
        missing = [name for name in (id_field, text_field) if name not in record]
        if missing:
            kind = "id" if missing[0] == id_field else "text"
            collected.bad.report(where, f"no {kind} field {missing[0]!r} (fields: {', '.join(record)})")
            continue
        title = record.get(title_field) if title_field else None
        collected.add(where, record[id_field], title, record[text_field], names, record.get("metadata"))
    return collected.result(path)


class _LineSource:
    """Feeds decoded lines to `csv.reader` from `start`, remembering how far it has read."""

    def __init__(self, lines: list[tuple[int, str]], start: int) -> None:
        self.lines = lines
        self.next_index = start

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self.next_index >= len(self.lines):
            raise StopIteration
        self.next_index += 1
        return self.lines[self.next_index - 1][1]


def _id_shape(value: str) -> str:
    """`doc-12` -> `a-9`: letters and digits collapsed, to tell an id from a word."""
    return re.sub(r"[0-9]+", "9", re.sub(r"[^\W\d_]+", "a", value.strip()))


def _swallowed_row(lines: list[str], delimiter: str, width: int, id_column: int, record_id_: str) -> int | None:
    """The index of the first continuation line of a multi-line record that reads as a row of its own, if any."""
    for index, line in enumerate(lines[1:], start=1):
        fields = next(csv.reader([line], delimiter=delimiter), [])
        if len(fields) == width and fields[id_column] and _id_shape(fields[id_column]) == _id_shape(record_id_):
            return index
    return None


def _quoting_problem(err: csv.Error, first: int, last: int) -> str:
    if "unexpected end of data" in str(err):
        return (
            f"unterminated quoted field: the quote opened here is never closed (it runs to the end of the file, line "
            f'{last}); close the quote, or double quotes inside a quoted field ("")'
        )
    return f'broken quoting ({err}) in the record on lines {first}-{last}; double quotes inside a quoted field ("")'


def iter_delimited(
    path: Path, delimiter: str, required: tuple[str, ...], bad: BadRecords | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """(first line, row by header column) of every record of a CSV/TSV file whose header row names the `required`
    columns (the first is the id column).

    A record with broken quoting, the wrong number of fields, or that swallowed rows (see the module docstring) is a
    bad record; after one the reader resumes at the next line."""
    bad = fail_on_bad_records(bad)
    lines = list(iter_lines(path, bad))
    header: list[str] | None = None
    position = 0
    while position < len(lines):
        source = _LineSource(lines, position)
        reader = csv.reader(source, delimiter=delimiter, strict=True)
        while True:
            start = source.next_index
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                first, last = lines[start][0], lines[source.next_index - 1][0]
                if header is None:
                    raise DatasetError(f"{path}:{first}: the header row: {_quoting_problem(err, first, last)}") from err
                bad.report(f"{path}:{first}", _quoting_problem(err, first, last))
                position = start + 1  # resume on the line after the one the bad record started on
                break
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # a blank line
            first, last = lines[start][0], lines[source.next_index - 1][0]
            if header is None:
                header = _check_header(path, first, fields, required)
                continue
            if len(fields) != len(header):
                bad.report(f"{path}:{first}", f"{len(fields)} fields but the header has {len(header)}")
                continue
            row = dict(zip(header, fields, strict=True))
            if last > first:
                raw = [text for _, text in lines[start : source.next_index]]
                id_field = required[0]
                swallowed = _swallowed_row(raw, delimiter, len(header), header.index(id_field), row[id_field])
                if swallowed is not None:
                    bad.report(
                        f"{path}:{first}",
                        f"a quoted field runs over lines {first}-{last} and line {lines[start + swallowed][0]} reads "
                        'as a row of its own: an unterminated quote? Close it, or double quotes inside it ("")',
                    )
                    position = start + 1
                    break
            yield first, row
    if header is None:
        raise DatasetError(f"{path}: no header row (the file is empty); the first line names the columns")


def _check_header(path: Path, line_no: int, header: list[str], required: tuple[str, ...]) -> list[str]:
    header = [name.strip() for name in header]
    for needed in required:
        if needed not in header:
            raise DatasetError(f"{path}:{line_no}: header has no column {needed!r} (columns: {', '.join(header)})")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DatasetError(f"{path}:{line_no}: the header repeats column(s) {', '.join(map(repr, repeated))}")
    return header


def load_delimited_corpus(
    path: Path,
    id_field: str = "id",
    text_field: str = "text",
    title_field: str | None = "title",
    bad: BadRecords | None = None,
) -> tuple[Document, ...]:
    """Read a CSV or TSV corpus with a header row (tab-separated when the suffix is .tsv)."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    collected = _Documents(fail_on_bad_records(bad))
    names = (id_field, text_field, title_field or "title")
    for line_no, row in iter_delimited(path, delimiter, (id_field, text_field), collected.bad):
        title = row.get(title_field) if title_field else None
        collected.add(f"{path}:{line_no}", row[id_field], title, row[text_field], names)
    return collected.result(path)


def load_text_folder(path: Path, bad: BadRecords | None = None) -> tuple[Document, ...]:
    """Read every .txt file under a folder: id = relative path without suffix, title = file stem."""
    collected = _Documents(fail_on_bad_records(bad))
    files = sorted(path.rglob("*.txt"))
    if not files:
        raise DatasetError(f"{path}: no .txt files found")
    for file in files:
        try:
            text = file.read_bytes().removeprefix(codecs.BOM_UTF8).decode("utf-8")
        except UnicodeDecodeError as err:
            collected.bad.report(str(file), f"not valid UTF-8 text ({err.reason} at byte {err.start})", source=path)
            continue
        relative = file.relative_to(path).with_suffix("").as_posix()
        collected.add(str(file), relative, file.stem, text, ("path", "text", "title"))
    return collected.result(path)


def load_corpus(
    path: Path,
    id_field: str | None = None,
    text_field: str = "text",
    title_field: str | None = "title",
    bad: BadRecords | None = None,
    strict_metadata: bool = False,
) -> tuple[Document, ...]:
    """Load a user corpus from a .jsonl, .csv or .tsv file or a folder of .txt files (JSONL records may carry a
    `metadata` object; see `load_jsonl_corpus`)."""
    path = Path(path)
    if path.is_dir():
        return load_text_folder(path, bad)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return load_jsonl_corpus(path, id_field or "_id", text_field, title_field, bad, strict_metadata)
    if suffix in (".csv", ".tsv"):
        return load_delimited_corpus(path, id_field or "id", text_field, title_field, bad)
    raise DatasetError(f"{path}: unknown corpus format {suffix!r}; use one of {', '.join(CORPUS_FORMATS)}")
