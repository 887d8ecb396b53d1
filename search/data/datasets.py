"""Load corpora, queries and graded qrels: BEIR layout, or a user's own JSONL/CSV/TSV file or .txt folder.

Every malformed record is reported with its file and line number; duplicate ids and empty texts are errors.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

logger = logging.getLogger(__name__)

DATA_ENV = "SEMSEARCH_DATA"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
MANIFEST_NAME = "datasets.json"  # package data of search.data, read with importlib.resources
CORPUS_FORMATS = ("jsonl", "csv", "tsv", "txt-folder")


class DatasetError(ValueError):
    """Bad or missing data; the message names the file, line or id at fault."""


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str

    def full_text(self) -> str:
        """The text the encoders see: title and body joined by a space (the BEIR/MTEB convention)."""
        return f"{self.title} {self.text}".strip()


@dataclass(frozen=True)
class Dataset:
    """A corpus, optionally with queries and graded relevance judgements per split."""

    name: str
    corpus: tuple[Document, ...]
    queries: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    path: Path | None = None

    def split_queries(self, split: str) -> tuple[list[str], list[str], dict[str, dict[str, int]]]:
        """Query ids, texts and qrels of the queries judged in `split`."""
        if split not in self.qrels:
            available = ", ".join(sorted(self.qrels)) or "none"
            raise DatasetError(f"dataset {self.name!r} has no qrels for split {split!r}; available: {available}")
        judged = self.qrels[split]
        missing = [qid for qid in judged if qid not in self.queries]
        if missing:
            raise DatasetError(f"qrels/{split}.tsv names queries missing from queries.jsonl: {missing[:5]}")
        ids = sorted(judged, key=_natural_key)
        return ids, [self.queries[q] for q in ids], judged


def _natural_key(value: str) -> tuple[int, int | str]:
    return (0, int(value)) if value.isdigit() else (1, value)


def corpus_fingerprint(corpus: tuple[Document, ...] | list[Document]) -> str:
    """A content hash of the corpus (ids, titles, texts, in order), for cache keys and index checks."""
    digest = hashlib.sha256()
    for doc in corpus:
        digest.update(f"{doc.id}\0{doc.title}\0{doc.text}\n".encode())
    return digest.hexdigest()


def _check_documents(docs: list[Document], source: str) -> tuple[Document, ...]:
    seen: set[str] = set()
    for doc in docs:
        if doc.id in seen:
            raise DatasetError(f"{source}: duplicate document id {doc.id!r}")
        seen.add(doc.id)
    if not docs:
        raise DatasetError(f"{source}: the corpus is empty")
    return tuple(docs)


def _make_document(doc_id: object, title: object, text: object, where: str) -> Document:
    if doc_id is None or str(doc_id).strip() == "":
        raise DatasetError(f"{where}: missing document id")
    title_s = "" if title is None else str(title).strip()
    text_s = "" if text is None else str(text).strip()
    if not text_s:
        raise DatasetError(f"{where}: document {str(doc_id)!r} has an empty text")
    return Document(str(doc_id), title_s, text_s)


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
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


def load_jsonl_corpus(
    path: Path, id_field: str = "_id", text_field: str = "text", title_field: str | None = "title"
) -> tuple[Document, ...]:
    """Read a JSONL corpus; `title_field` may be absent from records (or None to ignore titles)."""
    docs = []
    for line_no, record in _iter_jsonl(path):
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


def load_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for line_no, record in _iter_jsonl(path):
        where = f"{path}:{line_no}"
        if "_id" not in record or "text" not in record:
            raise DatasetError(f"{where}: a query needs '_id' and 'text' (fields: {', '.join(record)})")
        qid, text = str(record["_id"]), str(record["text"]).strip()
        if qid in queries:
            raise DatasetError(f"{where}: duplicate query id {qid!r}")
        if not text:
            raise DatasetError(f"{where}: query {qid!r} has an empty text")
        queries[qid] = text
    return queries


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels TSV (`query-id corpus-id score`, header line) into graded judgements."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            parts = line.rstrip("\n").split("\t")
            if line_no == 1 and parts[:1] == ["query-id"]:
                continue
            if not line.strip():
                continue
            if len(parts) != 3:
                raise DatasetError(f"{path}:{line_no}: expected 3 tab-separated fields, got {len(parts)}")
            qid, doc_id, score = parts
            try:
                qrels.setdefault(qid, {})[doc_id] = int(score)
            except ValueError as err:
                raise DatasetError(f"{path}:{line_no}: relevance {score!r} is not an integer") from err
    return qrels


def load_beir(path: Path, name: str | None = None) -> Dataset:
    """Load a BEIR-layout folder: corpus.jsonl, queries.jsonl (optional) and qrels/*.tsv (optional)."""
    path = Path(path)
    corpus_path = path / "corpus.jsonl"
    if not corpus_path.exists():
        raise DatasetError(f"{path}: no corpus.jsonl (BEIR layout: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)")
    corpus = load_jsonl_corpus(corpus_path)
    queries = load_queries(path / "queries.jsonl") if (path / "queries.jsonl").exists() else {}
    qrels = {p.stem: load_qrels(p) for p in sorted((path / "qrels").glob("*.tsv"))}
    doc_ids = {doc.id for doc in corpus}
    for split, judged in qrels.items():
        unknown = sorted({d for per_query in judged.values() for d in per_query} - doc_ids)
        if unknown:
            logger.warning(
                "qrels/%s.tsv judges %d documents absent from the corpus, e.g. %s", split, len(unknown), unknown[:3]
            )
    return Dataset(name=name or path.name, corpus=corpus, queries=queries, qrels=qrels, path=path)


def load_manifest() -> dict[str, dict]:
    return json.loads(resources.files("search.data").joinpath(MANIFEST_NAME).read_text(encoding="utf-8"))


def dataset_search_path() -> list[Path]:
    """Where named datasets are looked for, in order: $SEMSEARCH_DATA, ../shared/datasets, data/."""
    places = []
    if os.environ.get(DATA_ENV):
        places.append(Path(os.environ[DATA_ENV]).expanduser())
    places += [Path.cwd().parent / "shared" / "datasets", PROJECT_ROOT.parent / "shared" / "datasets"]
    places += [Path.cwd() / "data", PROJECT_ROOT / "data"]
    unique: list[Path] = []
    for place in places:
        if place.resolve() not in [p.resolve() for p in unique]:
            unique.append(place)
    return unique


def load_dataset(name_or_path: str, download: bool = True) -> Dataset:
    """Load a named dataset (from the manifest) or a path (BEIR folder, corpus file or .txt folder)."""
    manifest = load_manifest()
    if name_or_path in manifest:
        return load_beir(locate_named_dataset(name_or_path, manifest[name_or_path], download), name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "corpus.jsonl").exists():
        return load_beir(path)
    if path.exists():
        return Dataset(name=path.stem, corpus=load_corpus(path), path=path)
    raise DatasetError(
        f"unknown dataset {name_or_path!r}: use one of {', '.join(sorted(manifest))}, a BEIR folder, "
        "a .jsonl/.csv/.tsv corpus file or a folder of .txt files"
    )


def locate_named_dataset(name: str, entry: dict, download: bool = True) -> Path:
    places = dataset_search_path()
    for place in places:
        if (place / name / "corpus.jsonl").exists():
            return place / name
    target_root = Path(os.environ.get(DATA_ENV) or PROJECT_ROOT / "data").expanduser()
    hint = (
        f"dataset {name!r} not found in {', '.join(str(p) for p in places)}. Put the BEIR folder "
        f"({name}/corpus.jsonl, queries.jsonl, qrels/) in one of them, or set {DATA_ENV}; "
        f"it is published at {entry['url']}"
    )
    if not download:
        raise DatasetError(hint)
    try:
        return download_beir(name, entry, target_root)
    except (urllib.error.URLError, OSError, zipfile.BadZipFile) as err:
        raise DatasetError(f"{hint} (download failed: {err})") from err


def download_beir(name: str, entry: dict, target_root: Path) -> Path:
    """Download and unpack a public BEIR zip atomically, then check its record counts."""
    target_root.mkdir(parents=True, exist_ok=True)
    target = target_root / name
    logger.info("downloading %s from %s", name, entry["url"])
    with tempfile.TemporaryDirectory(dir=target_root, prefix=".download-") as tmp:
        archive = Path(tmp) / "data.zip"
        with urllib.request.urlopen(entry["url"], timeout=60) as response, archive.open("wb") as out:
            shutil.copyfileobj(response, out)
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(Path(tmp) / "out")
        folder = Path(tmp) / "out" / entry.get("archive_folder", name)
        dataset = load_beir(folder, name)
        expected = entry.get("counts", {}).get("corpus")
        if expected is not None and len(dataset.corpus) != expected:
            raise DatasetError(f"downloaded {name} has {len(dataset.corpus)} documents, expected {expected}")
        os.replace(folder, target)
    return target
