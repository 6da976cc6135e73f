"""Write a query result as a terminal table, CSV, JSON or Markdown (`blend query --format`).

CSV, JSON and Markdown are for machines and documents: every row (unless the caller limits
them), every character of every cell. The terminal table cuts long cells and stops after a
number of rows, and `cut_note` says so - nothing is cut silently.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any, TextIO

import orjson
import pyarrow as pa
from rich.table import Table
from rich.text import Text

TABLE_CELL_CHARS = 80  # longest cell of the terminal table (characters)
TABLE_ROWS = 50  # rows the terminal table shows when no limit is given
MIN_COLUMN_CHARS = 10  # narrowest a column may get before rows are shown as blocks instead


class OutputFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    MARKDOWN = "markdown"


@dataclass(frozen=True, slots=True)
class Shown:
    """How much of a result was written: rows (of n_rows) and cells cut at cell_chars."""

    n_rows: int
    n_shown: int
    n_cells_cut: int = 0
    cell_chars: int = TABLE_CELL_CHARS
    vertical: bool = False  # too many columns for the terminal: one block per row

    def cut_note(self, format_hint: bool = True) -> str | None:
        """What was left out, e.g. "(120 rows, 50 shown; 3 cells cut at 80 chars; ...)"."""
        parts = []
        if self.vertical:
            parts.append("too many columns for the terminal: one block per row")
        if self.n_shown < self.n_rows:
            parts.append(f"{self.n_rows} rows, {self.n_shown} shown")
        if self.n_cells_cut:
            cells = "cell" if self.n_cells_cut == 1 else "cells"
            parts.append(f"{self.n_cells_cut} {cells} cut at {self.cell_chars} chars")
        if not parts:
            return None
        if format_hint and (self.n_shown < self.n_rows or self.n_cells_cut):
            parts.append("use --format csv (and no --max-rows) for everything")
        return "(" + "; ".join(parts) + ")"


def text_of(value: Any) -> str:
    """A cell as text: NULL as empty, lists and structs as JSON, times in ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list | dict | tuple):
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    return str(value)


def _rows(table: pa.Table, max_rows: int | None) -> Iterator[dict[str, Any]]:
    shown = table if max_rows is None else table.slice(0, max_rows)
    for batch in shown.to_batches():
        yield from batch.to_pylist()


def write_csv(table: pa.Table, out: TextIO, max_rows: int | None = None) -> Shown:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    n = 0
    for row in _rows(table, max_rows):
        writer.writerow([text_of(v) for v in row.values()])
        n += 1
    return Shown(table.num_rows, n)


def write_json(table: pa.Table, out: TextIO, max_rows: int | None = None) -> Shown:
    """A JSON array of row objects, one row per line (NULL as null, times in ISO 8601)."""
    out.write("[")
    n = 0
    for row in _rows(table, max_rows):
        out.write(",\n" if n else "\n")
        out.write(orjson.dumps(row, default=str, option=orjson.OPT_NON_STR_KEYS).decode())
        n += 1
    out.write("\n]\n")
    return Shown(table.num_rows, n)


def write_markdown(table: pa.Table, out: TextIO, max_rows: int | None = None) -> Shown:
    """A GitHub-flavoured Markdown table; `|` escaped, line breaks as <br>."""
    out.write("| " + " | ".join(_md(c) for c in table.column_names) + " |\n")
    out.write("|" + "|".join("---" for _ in table.column_names) + "|\n")
    n = 0
    for row in _rows(table, max_rows):
        out.write("| " + " | ".join(_md(text_of(v)) for v in row.values()) + " |\n")
        n += 1
    return Shown(table.num_rows, n)


def terminal_table(
    table: pa.Table, max_rows: int | None = None, width: int = 80
) -> tuple[list[Table], Shown]:
    """Rich tables of the first max_rows rows (TABLE_ROWS by default), long cells cut.

    One table when every column gets at least MIN_COLUMN_CHARS (or its whole width) within
    `width` characters; else one two-column block (column, value) per row, so that no column
    is squeezed out of sight. Columns fold instead of cutting, so the only cut is ours.
    """
    limit = TABLE_ROWS if max_rows is None else max_rows
    names = table.column_names
    rows: list[list[str]] = []
    cut = 0
    for row in _rows(table, limit):
        cells = []
        for value in row.values():
            text = "NULL" if value is None else text_of(value)
            if len(text) > TABLE_CELL_CHARS:
                text = text[: TABLE_CELL_CHARS - 3] + "..."
                cut += 1
            cells.append(text)
        rows.append(cells)
    natural = [
        max([len(name), *(_widest_line(cells[i]) for cells in rows)])
        for i, name in enumerate(names)
    ]
    least = [min(n, MIN_COLUMN_CHARS) for n in natural]
    fits = sum(w + 3 for w in least) + 1 <= width  # 3: padding and border per column
    shown = Shown(table.num_rows, len(rows), cut, vertical=not fits)
    if fits:
        out = Table()
        for name, w in zip(names, least, strict=True):
            out.add_column(Text(name), overflow="fold", min_width=w)
        for cells in rows:
            out.add_row(*(Text(c) for c in cells))  # data, not rich markup: `[red]` stays text
        return [out], shown
    blocks = []
    for number, cells in enumerate(rows, start=1):
        block = Table("column", "value", title=f"row {number}", title_justify="left")
        for name, cell in zip(names, cells, strict=True):
            block.add_row(Text(name), Text(cell))
        blocks.append(block)
    return blocks, shown


def _widest_line(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def _md(text: str) -> str:
    return (
        text.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "<br>").replace("\n", "<br>")
    )
