"""How `semsearch search` shows its answers: one pipeline's hits with their titles and snippets, and several pipelines'
top-k measured against a reference (`--compare`), side by side in a wide terminal and stacked in a narrow one.

The overlap (recall, missed ids, each hit's rank in the reference's top-k, speed-up) is `search.compare`'s, the same
the HTTP `/compare` answers; this module only lays it out (`--json` prints `CompareResult.to_dict`, the route's own
JSON).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from search.pipeline import Hit, SearchResult, Timings

if TYPE_CHECKING:
    from search.compare import CompareResult, Comparison

ELLIPSIS = "…"
TITLE_CHARS = 100  # a title in the one-pipeline table
SNIPPET_CHARS = 160  # a snippet there: about two lines of a wide terminal (the index stores 300 characters)
STACKED_FRAME = 38  # a stacked table's columns but the document: rank, mark, an 8-digit id, score, borders
MIN_CELL_CHARS = 24  # a hit's title or snippet in a comparison: at least this, else what fits one line
NARROW_COLUMNS = 100  # below this, comparisons are stacked: one table per pipeline
MIN_PIPELINE_COLUMNS = 40  # side by side only when each pipeline's column gets at least this many characters
RANK_COLUMNS = 7  # the rank column with its borders and padding
CELL_FRAME = 3  # a column's border and padding

Layout = Literal["side-by-side", "stacked"]


def one_line(text: str, width: int) -> str:
    """`text` on one line (runs of whitespace as one space), cut to at most `width` characters with an ellipsis, at a
    word boundary when one falls in the last third."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    cut = flat[: max(width - 1, 0)]
    space = cut.rfind(" ")
    if space >= width * 2 // 3:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS


def hit_text(hit: Hit, title_chars: int, snippet_chars: int) -> Text:
    """A hit's title (bold, when it has one) over its snippet; either line is left out when empty."""
    text = Text()
    title, snippet = one_line(hit.title, title_chars), one_line(hit.snippet, snippet_chars)
    if title:
        text.append(title, style="bold")
    if title and snippet:
        text.append("\n")
    if snippet:
        text.append(snippet, style="dim")
    return text


def short_text(hit: Hit, chars: int) -> str:
    """One line naming a hit: its title, or its snippet when the corpus has no titles."""
    return one_line(hit.title, chars) or one_line(hit.snippet, chars)


def format_ms(ms: float) -> str:
    """Milliseconds to three significant figures or so: 0.042 ms, 3.14 ms, 31.4 ms, 314 ms."""
    return f"{ms:.3f} ms" if ms < 1 else f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def timings_line(timings: Timings) -> str:
    """Every stage's time, in the order a query goes through them."""
    stages = {
        "tokenize": timings.tokenize_ms,
        "encode": timings.encode_ms,
        "search": timings.search_ms,
        "rescore": timings.rescore_ms,
        "total": timings.total_ms,
    }
    return ", ".join(f"{stage} {format_ms(ms)}" for stage, ms in stages.items())


def print_search(console: Console, query: str, result: SearchResult) -> None:
    """One pipeline's hits as a table (rank, id, score, title and snippet), then its stage timings."""
    table = Table(title=Text(f"top {len(result.hits)} for {query!r}"))
    table.add_column("rank", justify="right")
    table.add_column("id", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("document", ratio=1)
    for rank, hit in enumerate(result.hits, start=1):
        table.add_row(str(rank), Text(hit.id), f"{hit.score:.4f}", hit_text(hit, TITLE_CHARS, SNIPPET_CHARS))
    console.print(table)
    console.print(Text(timings_line(result.timings)))


# --- comparisons -----------------------------------------------------------------------------------------------------


def reference_mark(rank: int | None) -> str:
    """`=N` for a hit the reference found at rank N, `+` for one it did not find."""
    return "+" if rank is None else f"={rank}"


def shown_order(result: CompareResult) -> list[str]:
    """The reference first, then the others in loading order."""
    return [result.reference, *(name for name in result.pipelines if name != result.reference)]


def choose_layout(width: int, pipelines: int) -> Layout:
    """Side by side when the terminal is wide enough to give each pipeline a readable column, else stacked."""
    wide_enough = width >= max(NARROW_COLUMNS, RANK_COLUMNS + MIN_PIPELINE_COLUMNS * pipelines)
    return "side-by-side" if wide_enough else "stacked"


def heading(result: CompareResult) -> Text:
    return Text(f"top {result.k} for {result.query!r}, measured against {result.reference}")


def legend(result: CompareResult) -> Text:
    return Text(
        f"=N: {result.reference} (the reference) found it at rank N; +: not in {result.reference}'s top {result.k}",
        style="dim",
    )


def compare_cell(hit: Hit, rank: int | None, is_reference: bool, chars: int) -> Text:
    """A hit in the side-by-side table: mark (not for the reference's own hits), id and score, then its title or
    snippet on one line of `chars` characters."""
    text = Text()
    if not is_reference:
        text.append(reference_mark(rank), style="green" if rank is not None else "yellow")
        text.append("  ")
    text.append(hit.id, style="bold")
    text.append(f"  {hit.score:.4f}\n")
    text.append(short_text(hit, chars), style="dim")
    return text


def side_by_side_table(result: CompareResult, width: int) -> Table:
    """One row per rank, one column per pipeline (the reference first), fitted to `width` characters."""
    names = shown_order(result)
    chars = max(MIN_CELL_CHARS, (width - RANK_COLUMNS) // len(names) - CELL_FRAME)
    table = Table(show_lines=True)
    table.add_column("rank", justify="right")
    for name in names:
        table.add_column(f"{name} (reference)" if name == result.reference else name, ratio=1)
    depth = max((len(result.pipelines[name].hits) for name in names), default=0)
    for row in range(depth):
        cells: list[Text | str] = [str(row + 1)]
        for name in names:
            compared = result.pipelines[name]
            if row < len(compared.hits):
                hit, rank = compared.hits[row], compared.reference_ranks[row]
                cells.append(compare_cell(hit, rank, name == result.reference, chars))
            else:
                cells.append("")
        table.add_row(*cells)
    return table


def stacked_table(result: CompareResult, name: str, width: int) -> Table:
    """One pipeline's top-k, its hits marked against the reference's (the reference's own table has no marks), each
    hit's title or snippet cut to about one line of `width` characters."""
    chars = max(MIN_CELL_CHARS, width - STACKED_FRAME)
    compared = result.pipelines[name]
    is_reference = name == result.reference
    table = Table(title=Text(f"{name} (reference)" if is_reference else name), title_justify="left")
    table.add_column("rank", justify="right")
    if not is_reference:
        table.add_column("ref")
    table.add_column("id", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("document", ratio=1)
    for row, (hit, rank) in enumerate(zip(compared.hits, compared.reference_ranks, strict=True), start=1):
        mark = [] if is_reference else [reference_mark(rank)]
        table.add_row(str(row), *mark, Text(hit.id), f"{hit.score:.4f}", Text(short_text(hit, chars)))
    return table


def pace_phrase(speedup: float, reference: str) -> str:
    """`speedup` (the reference's time / this one's) in words: 3.2x faster, 1.5x slower."""
    if speedup >= 1:
        return f"{speedup:.1f}x faster than {reference}"
    if speedup > 0:
        return f"{1 / speedup:.1f}x slower than {reference}"
    return f"{reference} took no measurable time"


def summary_lines(result: CompareResult, name: str, width: int) -> list[Text]:
    """Under the hits: recall@k and speed-up against the reference, the stage timings, and the reference's hits this
    pipeline missed (with their titles)."""
    compared: Comparison = result.pipelines[name]
    reference = result.reference
    if name == reference:
        return [Text(f"{name} (reference): ", style="bold") + Text(timings_line(compared.timings))]
    pace = pace_phrase(compared.speedup_vs_reference, reference)
    lines = [
        Text(f"{name}: ", style="bold")
        + Text(f"recall@{result.k} vs {reference} {compared.recall_vs_reference:.2f}, {pace}"),
        Text(f"  {timings_line(compared.timings)}"),
    ]
    reference_hits = result.pipelines[reference].hits
    position = {hit.id: (rank, hit) for rank, hit in enumerate(reference_hits, start=1)}
    for doc in compared.missing:
        rank, hit = position[doc]
        said = f"  missed {doc} ({reference} rank {rank}): "
        lines.append(Text(said + short_text(hit, max(MIN_CELL_CHARS, width - len(said)))))
    return lines


def print_compare(console: Console, result: CompareResult) -> None:
    """The pipelines' top-k against the reference's, laid out for the console's width, each pipeline's summary under
    it (side by side) or under its own table (stacked)."""
    names = shown_order(result)
    console.print(heading(result))
    if choose_layout(console.width, len(names)) == "side-by-side":
        console.print(side_by_side_table(result, console.width))
        console.print(legend(result))
        for name in names:
            for line in summary_lines(result, name, console.width):
                console.print(line)
        return
    console.print(legend(result))
    for name in names:
        console.print(stacked_table(result, name, console.width))
        for line in summary_lines(result, name, console.width):
            console.print(line)
