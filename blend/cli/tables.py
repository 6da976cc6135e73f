"""Tables of numbers for the terminal: a number is never wrapped or cut.

A narrow terminal makes rich shrink columns, and a shrunk column folds its cells, numbers
included ("0.58" over "31"); a table wider than the terminal loses its right edge ("154,04"
for "154,043.7"). Here every numeric column has a fixed width, so rich shrinks only the text
columns: the width of its header and its widest cell where the terminal has room, else of
the header's longest word (the header wraps), else of the widest cell (the header is cut).
A terminal too narrow even for the numbers side by side gets one block per row instead of
a table, as `blend query` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from rich.console import Console
from rich.table import Table
from rich.text import Text

_CELL_PADDING = 2  # rich's default: one space each side of a cell


class Headers(Enum):
    """How much of a numeric column's header its width makes room for."""

    WHOLE = "whole"  # the header on one line
    WORDS = "words"  # its longest word: the header wraps
    CUT = "cut"  # none: the header is cut to the numbers' width


def print_numbers_table(
    console: Console,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    text_columns: Sequence[str] = (),
    title: str | None = None,
) -> None:
    """`rows` (cells already formatted) as a table on `console`: the `text_columns`
    left-aligned and wrapping, the others numbers, right-aligned and whole (module doc)."""
    for headers in Headers:
        if least_width(columns, rows, text_columns, headers) <= console.width:
            console.print(numbers_table(columns, rows, text_columns, headers, title))
            return
    if title is not None:
        console.print(title)
    for number, row in enumerate(rows, start=1):
        block = Table(title=f"row {number}", title_justify="left")
        block.add_column("column")
        block.add_column("value", no_wrap=True)  # the names' column is the one that shrinks
        for column, cell in zip(columns, row, strict=True):
            block.add_row(Text(column), Text(cell, no_wrap=column not in text_columns))
        console.print(block)


def numbers_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    text_columns: Sequence[str] = (),
    headers: Headers = Headers.WHOLE,
    title: str | None = None,
) -> Table:
    """The table print_numbers_table prints when the terminal has least_width for it."""
    table = Table(title=title)
    numeric = [column not in text_columns for column in columns]
    for i, column in enumerate(columns):
        if numeric[i]:
            # a fixed width: rich never shrinks the column; the header wraps or is cut in it
            width = _number_width(column, rows, i, headers)
            table.add_column(column, justify="right", width=width)
        else:
            table.add_column(column, justify="left")
    for row in rows:
        table.add_row(*(Text(c, no_wrap=n) for c, n in zip(row, numeric, strict=True)))
    return table


def least_width(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    text_columns: Sequence[str] = (),
    headers: Headers = Headers.WHOLE,
) -> int:
    """Characters numbers_table needs at least: the numeric columns at their fixed widths,
    every text column as wide as its longest word, the cells' padding and the borders."""
    widths = [
        _longest_word([column, *(row[i] for row in rows)])
        if column in text_columns
        else _number_width(column, rows, i, headers)
        for i, column in enumerate(columns)
    ]
    return sum(w + _CELL_PADDING for w in widths) + len(columns) + 1


def _number_width(column: str, rows: Sequence[Sequence[str]], i: int, headers: Headers) -> int:
    header = {
        Headers.WHOLE: len(column),
        Headers.WORDS: _longest_word([column]),
        Headers.CUT: 1,
    }[headers]
    return max([header, *(len(row[i]) for row in rows)])


def _longest_word(texts: Sequence[str]) -> int:
    return max((len(word) for text in texts for word in text.split()), default=0)
