"""Load a dataset by name or path: the one entry point, and the public names of the package's loaders.

`load_dataset("scifact")` finds a named dataset (`search.data.registry`); a path is a BEIR folder
(`search.data.beir`), or a JSONL/CSV/TSV corpus file or a folder of .txt files (`search.data.plain`).
"""

from __future__ import annotations

from pathlib import Path

from search.data.beir import load_beir, load_qrels, load_queries
from search.data.plain import (
    CORPUS_FORMATS,
    load_corpus,
    load_delimited_corpus,
    load_jsonl_corpus,
    load_text_folder,
)
from search.data.records import (
    BAD_RECORD_POLICIES,
    BadRecords,
    Dataset,
    DatasetError,
    Document,
    corpus_fingerprint,
    is_blank,
)
from search.data.registry import load_manifest, locate_named_dataset

__all__ = [
    "BAD_RECORD_POLICIES",
    "CORPUS_FORMATS",
    "BadRecords",
    "Dataset",
    "DatasetError",
    "Document",
    "corpus_fingerprint",
    "is_blank",
    "load_beir",
    "load_corpus",
    "load_dataset",
    "load_delimited_corpus",
    "load_jsonl_corpus",
    "load_qrels",
    "load_queries",
    "load_text_folder",
]


def load_dataset(name_or_path: str, download: bool = True, on_bad_record: str = "fail") -> Dataset:
    """Load a named dataset (from the manifest) or a path (BEIR folder, corpus file or .txt folder).

    `on_bad_record`: "fail" raises on the first bad record (naming its file and line); "skip" leaves bad records out,
    logs them and counts them in `Dataset.skipped_records`."""
    bad = BadRecords(on_bad_record)  # checks the policy before anything is read
    manifest = load_manifest()
    if name_or_path in manifest:
        folder = locate_named_dataset(name_or_path, manifest[name_or_path], download)
        return load_beir(folder, name_or_path, on_bad_record=on_bad_record)
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "corpus.jsonl").exists():
        return load_beir(path, on_bad_record=on_bad_record)
    if path.exists():
        corpus = load_corpus(path, bad=bad)
        bad.finish()
        return Dataset(name=path.stem, corpus=corpus, path=path, skipped_records=bad.skipped)
    raise DatasetError(
        f"unknown dataset {name_or_path!r}: use one of {', '.join(sorted(manifest))}, a BEIR folder, "
        "a .jsonl/.csv/.tsv corpus file or a folder of .txt files"
    )
