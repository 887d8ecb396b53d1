"""The BEIR layout: `corpus.jsonl`, `queries.jsonl` (optional) and graded qrels `qrels/SPLIT.tsv` (optional).

Read as strictly as `search.data.plain`: every bad record (undecodable bytes, malformed line, wrong field type, empty
or duplicate query, malformed qrels line) is reported with its file and line, or skipped and counted."""

from __future__ import annotations

import logging
from pathlib import Path

from search.data.plain import iter_jsonl, iter_lines, load_jsonl_corpus, record_id, record_text
from search.data.records import BadRecords, Dataset, DatasetError, fail_on_bad_records, is_blank

logger = logging.getLogger(__name__)


def load_queries(path: Path, bad: BadRecords | None = None) -> dict[str, str]:
    """Read a BEIR queries.jsonl (`_id`, `text`); duplicate ids and empty texts are bad records."""
    bad = fail_on_bad_records(bad)
    queries: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for line_no, record in iter_jsonl(path, bad):
        where = f"{path}:{line_no}"
        if "_id" not in record or "text" not in record:
            bad.report(where, f"a query needs '_id' and 'text' (fields: {', '.join(record)})")
            continue
        try:
            qid, text = record_id(record["_id"], "_id"), record_text(record["text"], "text")
        except ValueError as err:
            bad.report(where, str(err))
            continue
        if qid in queries:
            bad.report(where, f"duplicate query id {qid!r} (first on line {first_seen[qid]})")
        elif is_blank(text):
            bad.report(where, f"query {qid!r} has an empty text")
        else:
            queries[qid] = text
            first_seen[qid] = line_no
    return queries


def load_qrels(path: Path, bad: BadRecords | None = None) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels TSV (`query-id corpus-id score`, optional header line) into graded judgements."""
    bad = fail_on_bad_records(bad)
    qrels: dict[str, dict[str, int]] = {}
    for line_no, line in iter_lines(path, bad):
        parts = line.rstrip("\r\n").split("\t")
        if line_no == 1 and parts[:1] == ["query-id"]:
            continue
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        if len(parts) != 3:
            bad.report(where, f"expected 3 tab-separated fields, got {len(parts)}")
            continue
        qid, doc_id, score = (part.strip() for part in parts)
        if not qid or not doc_id:
            bad.report(where, "empty query id or corpus id")
            continue
        try:
            qrels.setdefault(qid, {})[doc_id] = int(score)
        except ValueError:
            bad.report(where, f"relevance {score!r} is not an integer")
    return qrels


def load_beir(path: Path, name: str | None = None, on_bad_record: str = "fail") -> Dataset:
    """Load a BEIR-layout folder; qrels judging documents absent from the corpus are logged, not fatal.

    `on_bad_record`: "fail" (the first bad record raises `DatasetError`) or "skip" (bad records are left out, logged
    and counted in `Dataset.skipped_records`)."""
    path = Path(path)
    bad = BadRecords(on_bad_record)
    corpus_path = path / "corpus.jsonl"
    if not corpus_path.exists():
        raise DatasetError(f"{path}: no corpus.jsonl (BEIR layout: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)")
    corpus = load_jsonl_corpus(corpus_path, bad=bad)
    queries = load_queries(path / "queries.jsonl", bad) if (path / "queries.jsonl").exists() else {}
    qrels = {p.stem: load_qrels(p, bad) for p in sorted((path / "qrels").glob("*.tsv"))}
    bad.finish()
    doc_ids = {doc.id for doc in corpus}
    for split, judged in qrels.items():
        unknown = sorted({d for per_query in judged.values() for d in per_query} - doc_ids)
        if unknown:
            logger.warning(
                "qrels/%s.tsv judges %d documents absent from the corpus, e.g. %s", split, len(unknown), unknown[:3]
            )
    return Dataset(
        name=name or path.name, corpus=corpus, queries=queries, qrels=qrels, path=path, skipped_records=bad.skipped
    )
