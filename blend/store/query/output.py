"""Write a query result as a terminal table, CSV, JSON or Markdown (`blend query --format`).

Rows arrive as a stream of Arrow batches and are written as they come: nothing holds the
whole result. CSV, JSON and Markdown are for machines and documents: every row (unless the
caller limits them), every character of every cell. The terminal table reads only the rows
it shows (and one batch more, to tell whether there are more), cuts long cells, and
`cut_note` says what it left out - nothing is cut silently.

Cell text is data, never terminal commands: in the table and in Markdown every control
character (C0 including newline and tab, DEL, C1) and the bidirectional-override characters
are shown as escapes (`\\x1b`, `\\n`, `\\u202e`); JSON escapes them the JSON way (the parsed
text is unchanged).

Numbers stay numbers in JSON: DuckDB hands HUGEINT (what sum() of integers returns) and
DECIMAL to Arrow as decimals, which JSON gets as their exact digits (`7751`, `1.50`,
`170141183460469231731687303715884105727`), never as strings and never rounded through a
float. CSV keeps each cell's exact text (quoted as CSV quotes): it is for
programs, which must get the data as stored; page it with `less` (which shows control
characters as `ESC` etc.), not `cat`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Any, TextIO

import orjson
import pyarrow as pa
from rich.table import Table
from rich.text import Text

TABLE_CELL_CHARS = 80  # longest cell of the terminal table (characters, after escaping)
TABLE_ROWS = 50  # rows the terminal table shows when no limit is given
MIN_COLUMN_CHARS = 10  # narrowest a column may get before rows are shown as blocks instead

# Characters a terminal may act on or that reorder what it shows: C0, DEL, C1, the line and
# paragraph separators, and the bidirectional embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# What JSON leaves raw of those (it escapes C0 itself): escaped as \u00XX, still valid JSON.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class OutputFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    MARKDOWN = "markdown"


@dataclass(frozen=True, slots=True)
class Shown:
    """How much of a result was written: n_shown rows of the n_rows read (`more`: the result
    went on past those, uncounted) and the cells cut at cell_chars."""

    n_rows: int
    n_shown: int
    n_cells_cut: int = 0
    cell_chars: int = TABLE_CELL_CHARS
    vertical: bool = False  # too many columns for the terminal: one block per row
    more: bool = False

    def cut_note(self, format_hint: bool = True) -> str | None:
        """What was left out, e.g. "(120 rows, 50 shown; 3 cells cut at 80 chars; ...)"."""
        parts = []
        if self.vertical:
            parts.append("too many columns for the terminal: one block per row")
        rows_cut = self.more or self.n_shown < self.n_rows
        if rows_cut:
            counted = f"more than {self.n_rows}" if self.more else str(self.n_rows)
            parts.append(f"{counted} rows, {self.n_shown} shown")
        if self.n_cells_cut:
            cells = "cell" if self.n_cells_cut == 1 else "cells"
            parts.append(f"{self.n_cells_cut} {cells} cut at {self.cell_chars} chars")
        if not parts:
            return None
        if format_hint and (rows_cut or self.n_cells_cut):
            parts.append("use --format csv (and no --max-rows) for everything")
        return "(" + "; ".join(parts) + ")"


def visible(text: str) -> str:
    """`text` with control and bidi-override characters as escapes (`\\x1b`, `\\n`)."""
    return _UNSAFE.sub(_escape, text)


def visible_lines(text: str) -> str:
    """visible() for a message of several lines: its line breaks stay."""
    return "\n".join(visible(line) for line in text.split("\n"))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def text_of(value: Any) -> str:
    """A cell as text: NULL as empty, lists and structs as JSON, times in ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list | dict | tuple):
        return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()
    return str(value)


def _json_default(value: Any) -> Any:
    """What orjson cannot write itself: decimals as JSON numbers with their exact digits
    (HUGEINT sums beyond 64 bits included; orjson has no such integers), the rest as text."""
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value)) if value.is_finite() else None
    return str(value)


class _Rows:
    """The rows (as value tuples) of a stream of batches, up to `limit`; counts what it read.

    After iterating: n_read rows were read, n_taken yielded, and `more` says the stream went
    on past n_read (it is not read further: reading is what costs time and memory).
    """

    def __init__(self, batches: Iterable[pa.RecordBatch], limit: int | None) -> None:
        self._batches = iter(batches)
        self._limit = limit
        self.n_read = 0
        self.n_taken = 0
        self.more = False

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for batch in self._batches:
            self.n_read += batch.num_rows
            room = batch.num_rows if self._limit is None else self._limit - self.n_taken
            wanted = batch.slice(0, min(room, batch.num_rows))
            # By column, not batch.to_pylist(): duplicate column names stay apart.
            for row in zip(*(column.to_pylist() for column in wanted.columns), strict=True):
                self.n_taken += 1
                yield row
            if self._limit is not None and self.n_taken >= self._limit:
                self._look_past()
                return

    def _look_past(self) -> None:
        """Read one more non-empty batch, if any: an exact count when the result ends here."""
        for batch in self._batches:
            if batch.num_rows:
                self.n_read += batch.num_rows
                self.more = True
                return

    def shown(self, **cut: Any) -> Shown:
        return Shown(self.n_read, self.n_taken, more=self.more, **cut)


def write_csv(
    columns: Sequence[str],
    batches: Iterable[pa.RecordBatch],
    out: TextIO,
    max_rows: int | None = None,
) -> Shown:
    """CSV with a header; each cell's exact text (see the module's note on terminals)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    rows = _Rows(batches, max_rows)
    for row in rows:
        writer.writerow([text_of(v) for v in row])
    return rows.shown()


def write_json(
    columns: Sequence[str],
    batches: Iterable[pa.RecordBatch],
    out: TextIO,
    max_rows: int | None = None,
) -> Shown:
    """A JSON array of row objects, one row per line (NULL as null, times in ISO 8601,
    decimals and HUGEINTs as exact JSON numbers)."""
    out.write("[")
    rows = _Rows(batches, max_rows)
    for row in rows:
        out.write(",\n" if rows.n_taken > 1 else "\n")
        record = dict(zip(columns, row, strict=True))
        text = orjson.dumps(record, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()
        out.write(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))
    out.write("\n]\n")
    return rows.shown()


def write_markdown(
    columns: Sequence[str],
    batches: Iterable[pa.RecordBatch],
    out: TextIO,
    max_rows: int | None = None,
) -> Shown:
    """A GitHub-flavoured Markdown table; `|` escaped, line breaks as <br>, other control
    characters as escapes."""
    out.write("| " + " | ".join(_md(c) for c in columns) + " |\n")
    out.write("|" + "|".join("---" for _ in columns) + "|\n")
    rows = _Rows(batches, max_rows)
    for row in rows:
        out.write("| " + " | ".join(_md(text_of(v)) for v in row) + " |\n")
    return rows.shown()


def terminal_table(
    columns: Sequence[str],
    batches: Iterable[pa.RecordBatch],
    max_rows: int | None = None,
    width: int = 80,
) -> tuple[list[Table], Shown]:
    """Rich tables of the first max_rows rows (TABLE_ROWS by default), long cells cut.

    One table when every column gets at least MIN_COLUMN_CHARS (or its whole width) within
    `width` characters; else one two-column block (column, value) per row, so that no column
    is squeezed out of sight. Columns fold instead of cutting, so the only cut is ours.
    """
    limit = TABLE_ROWS if max_rows is None else max_rows
    names = [visible(name) for name in columns]
    rows: list[list[str]] = []
    numeric = [True] * len(names)  # every value a number (or NULL): never folded
    cut = 0
    taken = _Rows(batches, limit)
    for row in taken:
        cells = []
        for i, value in enumerate(row):
            text = "NULL" if value is None else visible(text_of(value))
            if value is not None and not _is_number(value):
                numeric[i] = False
            if len(text) > TABLE_CELL_CHARS:
                text = text[: TABLE_CELL_CHARS - 3] + "..."
                cut += 1
            cells.append(text)
        rows.append(cells)
    widest = [max((len(cells[i]) for cells in rows), default=0) for i in range(len(names))]
    natural = [max(len(name), w) for name, w in zip(names, widest, strict=True)]
    # a number column keeps its widest number; its header may wrap
    least = [
        w if num else min(n, MIN_COLUMN_CHARS)
        for n, w, num in zip(natural, widest, numeric, strict=True)
    ]
    fits = sum(w + 3 for w in least) + 1 <= width  # 3: padding and border per column
    shown = taken.shown(n_cells_cut=cut, vertical=not fits)
    if fits:
        out = Table()
        for name, w, num in zip(names, least, numeric, strict=True):
            out.add_column(
                Text(name), overflow="fold", min_width=w, justify="right" if num else "left"
            )
        for cells in rows:
            # data, not rich markup: `[red]` stays text; a number is never folded
            out.add_row(*(Text(c, no_wrap=n) for c, n in zip(cells, numeric, strict=True)))
        return [out], shown
    blocks = []
    for number, cells in enumerate(rows, start=1):
        block = Table("column", "value", title=f"row {number}", title_justify="left")
        for name, cell in zip(names, cells, strict=True):
            block.add_row(Text(name), Text(cell))
        blocks.append(block)
    return blocks, shown


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _md(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("|", "\\|")
    return visible(escaped.replace("\r\n", "<br>").replace("\n", "<br>"))
