"""Tables of numbers for the terminal: a number is never wrapped or cut.

A narrow terminal makes rich shrink columns, and a shrunk column folds its cells, numbers
included ("0.58" over "31"). Here every numeric column is at least as wide as its widest
cell and never wraps; the headers (words) wrap instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text


def numbers_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    text_columns: Sequence[str] = (),
    title: str | None = None,
) -> Table:
    """A table of `rows` (cells already formatted); the `text_columns` are left-aligned and
    may wrap, the others are numbers: right-aligned, never wrapped."""
    table = Table(title=title)
    numeric = [column not in text_columns for column in columns]
    for i, column in enumerate(columns):
        if numeric[i]:
            widest = max((len(row[i]) for row in rows), default=0)
            table.add_column(column, justify="right", min_width=widest)
        else:
            table.add_column(column, justify="left")
    for row in rows:
        # a number's cell never wraps (its column is as wide as it); its header may
        table.add_row(*(Text(c, no_wrap=n) for c, n in zip(row, numeric, strict=True)))
    return table
