"""`semsearch add`, `delete` and `show`: write documents into index directories in place, and read one back."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from search.cli.base import AsJson, app, check_index_dir, console, print_json, run_or_exit, threads_option
from search.cli.choices import BadRecordPolicy
from semsearch_common.threads import resolve_threads

if TYPE_CHECKING:
    from search.writes import CorpusWriter

IndexDirs = Annotated[
    list[Path],
    typer.Option(
        "--index-dir",
        help="index directory to write (repeatable: every pipeline over one corpus, e.g. the teacher's and the "
        "compressed one, takes the write at the same version)",
    ),
]


def open_writer(index_dirs: list[Path], threads: int | None) -> CorpusWriter:
    """Every directory checked, then loaded and opened for writes (each takes its directory's write lock)."""
    from search.pipeline import Pipeline
    from search.writes import CorpusWriter

    if not index_dirs:
        raise ValueError("give at least one --index-dir")
    if len(set(map(Path.resolve, index_dirs))) != len(index_dirs):
        raise ValueError("an --index-dir is given twice")
    for index_dir in index_dirs:
        check_index_dir(index_dir)
    pipelines = {str(d): Pipeline.load(d, threads=resolve_threads(threads), writable=True) for d in index_dirs}
    return CorpusWriter(pipelines, threads=resolve_threads(threads))


@app.command()
def add(
    file: Annotated[
        Path,
        typer.Argument(
            help="documents to add or replace: .jsonl (with optional metadata), .csv, "
            ".tsv or a folder of .txt files, as for `semsearch index`"
        ),
    ],  # fmt: skip
    index_dir: IndexDirs,
    on_bad_record: Annotated[
        BadRecordPolicy, typer.Option(help="a bad record (wrong type, bad metadata, duplicate id): fail or skip")
    ] = "fail",
    threads: Annotated[int | None, threads_option("encoder threads")] = None,
    as_json: AsJson = False,
) -> None:
    """Add documents to index directories, or replace those whose id they hold, without a rebuild: logged in each
    directory's document store, encoded by its document encoder, added to its FAISS index."""
    from indexes.livestore import NewDoc
    from search.data.plain import load_corpus
    from search.data.records import BadRecords
    from semsearch_common.progress import make_progress

    def action() -> dict[str, Any]:
        docs = load_corpus(file, bad=BadRecords(on_bad_record), strict_metadata=True)
        writer = open_writer(index_dir, threads)
        try:
            before = {doc.id for doc in docs if writer.get(doc.id) is not None}
            receipt = writer.upsert([NewDoc(d.id, d.title, d.text, dict(d.metadata or {}) or None) for d in docs])
            with make_progress(not as_json) as progress:
                task = progress.add_task("encoding", total=len(docs), info="")
                writer.drain(lambda done, left: progress.update(task, completed=done, info=f"{left} left"))
            status = writer.status()
            return {
                "added": len(docs) - len(before),
                "replaced": len(before),
                "versions": f"{receipt['first_version']}..{receipt['last_version']}",
                "documents_per_second": status["throughput"]["documents_per_second"],
                "index_dirs": {
                    name: {key: p[key] for key in ("documents", "generation", "hidden", "compactions")}
                    for name, p in status["pipelines"].items()
                },  # fmt: skip
            }
        finally:
            writer.close()

    print_result(run_or_exit(action), as_json)


@app.command()
def delete(
    ids: Annotated[list[str], typer.Argument(help="ids of the documents to delete")],
    index_dir: IndexDirs,
    as_json: AsJson = False,
) -> None:
    """Delete documents from index directories in place (an id no directory holds is reported, not an error)."""

    def action() -> dict[str, Any]:
        writer = open_writer(index_dir, threads=1)
        try:
            deleted = writer.delete(ids)
            writer.compact_if_needed()
            return {
                "deleted": [d.id for d in deleted if d.pos is not None or d.was_pending],
                "not_found": [d.id for d in deleted if d.pos is None and not d.was_pending],
                "version": max((d.version for d in deleted if d.version is not None), default=None),
            }
        finally:
            writer.close()

    print_result(run_or_exit(action), as_json)


@app.command()
def show(
    doc_id: Annotated[str, typer.Argument(help="a document id")],
    index_dir: Annotated[Path, typer.Option(help="index directory from `semsearch index`")],
    as_json: AsJson = False,
) -> None:
    """Show one document as the directory's store holds it: title, snippet, metadata, version, state."""
    from indexes.docstore import DOCS_DB, DocStore

    def action() -> dict[str, Any]:
        check_index_dir(index_dir)
        store = DocStore.open(index_dir / DOCS_DB)
        try:
            doc = store.get(doc_id)
        finally:
            store.close()
        if doc is None:
            raise ValueError(f"{index_dir} holds no document {doc_id!r}")
        return doc

    print_result(run_or_exit(action), as_json)


def print_result(values: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(values)
        return
    for key, value in values.items():
        console.print(f"{key}: {value}")
