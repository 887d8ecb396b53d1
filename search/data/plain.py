"""A user's own corpus: a JSONL, CSV or TSV file, or a folder of .txt files.

Every malformed record is reported with its file and line number; duplicate ids and empty texts are errors.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from search.data.records import DatasetError, Document

CORPUS_FORMATS = ("jsonl", "csv", "tsv", "txt-folder")


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of every non-blank line; a line that is not a JSON object is an error."""
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(f"{path}:{line_no}: malformed JSON ({err.msg})") from err
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
            yield line_no, record


def _make_document(doc_id: object, title: object, text: object, where: str) -> Document:
    if doc_id is None or str(doc_id).strip() == "":
        raise DatasetError(f"{where}: missing document id")
    title_s = "" if title is None else str(title).strip()
    text_s = "" if text is None else str(text).strip()
    if not text_s:
        raise DatasetError(f"{where}: document {str(doc_id)!r} has an empty text")
    return Document(str(doc_id), title_s, text_s)


def _check_documents(docs: list[Document], source: str) -> tuple[Document, ...]:
    seen: set[str] = set()
    for doc in docs:
        if doc.id in seen:
            raise DatasetError(f"{source}: duplicate document id {doc.id!r}")
        seen.add(doc.id)
    if not docs:
        raise DatasetError(f"{source}: the corpus is empty")
    return tuple(docs)


def load_jsonl_corpus(
    path: Path, id_field: str = "_id", text_field: str = "text", title_field: str | None = "title"
) -> tuple[Document, ...]:
    """Read a JSONL corpus; `title_field` may be absent from records (or None to ignore titles)."""
    docs = []
    for line_no, record in iter_jsonl(path):
        where = f"{path}:{line_no}"
        if id_field not in record:
            raise DatasetError(f"{where}: no id field {id_field!r} (fields: {', '.join(record)})")
        if text_field not in record:
            raise DatasetError(f"{where}: no text field {text_field!r} (fields: {', '.join(record)})")
        title = record.get(title_field) if title_field else None
        docs.append(_make_document(record[id_field], title, record[text_field], where))
    return _check_documents(docs, str(path))


def load_delimited_corpus(
    path: Path, id_field: str = "id", text_field: str = "text", title_field: str | None = "title"
) -> tuple[Document, ...]:
    """Read a CSV or TSV corpus with a header row."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        header = reader.fieldnames or []
        for needed in (id_field, text_field):
            if needed not in header:
                raise DatasetError(f"{path}:1: header has no column {needed!r} (columns: {', '.join(header)})")
        docs = []
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row:
                raise DatasetError(f"{where}: more fields than the header's {len(header)}")
            title = row.get(title_field) if title_field else None
            docs.append(_make_document(row[id_field], title, row[text_field], where))
    return _check_documents(docs, str(path))


def load_text_folder(path: Path) -> tuple[Document, ...]:
    """Read every .txt file under a folder: id = relative path without suffix, title = file stem."""
    docs = []
    for file in sorted(path.rglob("*.txt")):
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DatasetError(f"{file}: not valid UTF-8 text ({err.reason})") from err
        relative = file.relative_to(path).with_suffix("").as_posix()
        docs.append(_make_document(relative, file.stem, text, str(file)))
    if not docs:
        raise DatasetError(f"{path}: no .txt files found")
    return _check_documents(docs, str(path))


def load_corpus(
    path: Path, id_field: str | None = None, text_field: str = "text", title_field: str | None = "title"
) -> tuple[Document, ...]:
    """Load a user corpus from a .jsonl, .csv or .tsv file or a folder of .txt files."""
    path = Path(path)
    if path.is_dir():
        return load_text_folder(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return load_jsonl_corpus(path, id_field or "_id", text_field, title_field)
    if suffix in (".csv", ".tsv"):
        return load_delimited_corpus(path, id_field or "id", text_field, title_field)
    raise DatasetError(f"{path}: unknown corpus format {suffix!r}; use one of {', '.join(CORPUS_FORMATS)}")
