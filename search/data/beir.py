"""The BEIR layout: `corpus.jsonl`, `queries.jsonl` (optional) and graded qrels `qrels/SPLIT.tsv` (optional)."""

from __future__ import annotations

import logging
from pathlib import Path

from search.data.plain import iter_jsonl, load_jsonl_corpus
from search.data.records import Dataset, DatasetError

logger = logging.getLogger(__name__)


def load_queries(path: Path) -> dict[str, str]:
    """Read a BEIR queries.jsonl (`_id`, `text`); duplicate ids and empty texts are errors."""
    queries: dict[str, str] = {}
    for line_no, record in iter_jsonl(path):
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
    """Load a BEIR-layout folder; qrels judging documents absent from the corpus are logged, not fatal."""
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
