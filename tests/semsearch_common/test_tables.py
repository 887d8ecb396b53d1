from __future__ import annotations

import pytest

from semsearch_common.tables import markdown_table


def test_markdown_table_formats_cells_and_checks_widths() -> None:
    table = markdown_table(["name", "ndcg", "note"], [["teacher", 0.65569, None], ["int8", 1, True]], digits=3)
    assert table.splitlines() == [
        "| name | ndcg | note |",
        "|---|---|---|",
        "| teacher | 0.656 | – |",
        "| int8 | 1 | True |",
    ]
    with pytest.raises(ValueError, match="3 cells"):
        markdown_table(["a", "b", "c"], [["x"]])
