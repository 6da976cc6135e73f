"""Parquet input in bounded memory: each row's size checked before it becomes Python objects.

A row's size is the bytes of its text values (strings and binaries, nested ones in `messages`
included) in the input columns: what its JSON line would hold, less the punctuation. A row
over max_line_bytes is rejected like an oversize JSON Lines line ("line too long: row of N
bytes > max_line_bytes (M)"); its values never become Python strings, and its reject keeps a
preview (each value cut to RAW_LIMIT_BYTES), not the row.

Memory: a row group is read in batches of about BATCH_BYTES, sized from its uncompressed size
in the file's metadata, through a buffered reader (READ_BUFFER_BYTES), so neither a large
row group nor a large file is held whole. A row group of one row whose uncompressed size
exceeds max_line_bytes by more than the format's own overhead (CHUNK_OVERHEAD_BYTES per
column) is rejected from the metadata alone, without decompressing it: a few kilobytes of
zstd unpack to gigabytes. A huge value in a row group of several rows cannot be found from
the metadata: it is decompressed once into Arrow memory (about its size), measured, dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from blend.ingest.records import RAW_LIMIT_BYTES, IngestError, RawRecord, render_row
from blend.ingest.validate import INPUT_COLUMNS

# Bytes of input columns read per batch (at most MAX_BATCH_ROWS rows, at least one).
BATCH_BYTES = 16 << 20
MAX_BATCH_ROWS = 8192
# The reader fetches a column chunk this many bytes at a time instead of whole.
READ_BUFFER_BYTES = 1 << 20
# Bytes a column chunk holds beyond its values: page headers (with min/max statistics, which
# Parquet writers leave out above 4 KiB), repetition and definition levels. A one-row group
# larger than max_line_bytes plus this per column surely holds a row over the limit.
CHUNK_OVERHEAD_BYTES = 64 << 10
PROMPT_COLUMNS = ("prompt", "messages")

Sizes = npt.NDArray[np.int64]


def open_parquet(path: Path) -> pq.ParquetFile:
    """The file opened for bounded reads; IngestError if it is not Parquet or has no prompt
    column."""
    try:
        parquet = pq.ParquetFile(path, buffer_size=READ_BUFFER_BYTES, pre_buffer=False)
    except (pa.ArrowException, OSError) as error:
        raise IngestError(f"{path}: not a readable Parquet file: {error}") from None
    require_prompt_column(path, parquet.schema_arrow.names)
    return parquet


def require_prompt_column(path: Path, columns: list[str]) -> None:
    if not any(name in columns for name in PROMPT_COLUMNS):
        raise IngestError(
            f"{path}: no 'prompt' or 'messages' column (columns: {', '.join(columns) or 'none'})"
        )


def input_columns(parquet: pq.ParquetFile) -> list[str]:
    return [name for name in parquet.schema_arrow.names if name in INPUT_COLUMNS]


@dataclass(frozen=True, slots=True)
class RowGroup:
    """One row group of the file, as its metadata describes it."""

    index: int
    first_row: int  # 0-based row index of its first row in the file
    num_rows: int
    column_bytes: dict[str, int]  # input column -> uncompressed bytes (leaves summed)

    @property
    def n_bytes(self) -> int:
        return sum(self.column_bytes.values())

    def batch_rows(self) -> int:
        """Rows per batch so that a batch holds about BATCH_BYTES."""
        per_row = max(1, self.n_bytes // max(1, self.num_rows))
        return int(min(MAX_BATCH_ROWS, max(1, BATCH_BYTES // per_row)))

    def unread_oversize(self, max_line_bytes: int) -> bool:
        """A single row that the metadata alone shows to be over max_line_bytes."""
        allowance = CHUNK_OVERHEAD_BYTES * len(self.column_bytes)
        return self.num_rows == 1 and self.n_bytes > max_line_bytes + allowance


def row_groups(parquet: pq.ParquetFile) -> list[RowGroup]:
    """The row groups with the uncompressed sizes of their input columns."""
    metadata = parquet.metadata
    wanted = set(input_columns(parquet))
    groups, first_row = [], 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        column_bytes: dict[str, int] = {}
        for leaf in range(group.num_columns):
            chunk = group.column(leaf)
            top = chunk.path_in_schema.split(".", 1)[0]
            if top in wanted:
                column_bytes[top] = column_bytes.get(top, 0) + chunk.total_uncompressed_size
        groups.append(RowGroup(index, first_row, group.num_rows, column_bytes))
        first_row += group.num_rows
    return groups


def group_batches(parquet: pq.ParquetFile, group: RowGroup) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(row index of its first row, batch) of one row group, in order."""
    first = group.first_row
    for batch in parquet.iter_batches(
        batch_size=group.batch_rows(), row_groups=[group.index], columns=input_columns(parquet)
    ):
        yield first, batch
        first += batch.num_rows


def read_parquet_rows(path: Path, max_line_bytes: int) -> Iterator[RawRecord]:
    """One record per row (line_no = row index + 1, offset = row index), in file order; rows
    over max_line_bytes come back as reader rejects."""
    with open_parquet(path) as parquet:
        for group in row_groups(parquet):
            if group.unread_oversize(max_line_bytes):
                yield _unread_reject(parquet, group, max_line_bytes)
                continue
            for first, batch in group_batches(parquet, group):
                sizes = _column_bytes(batch)
                row_bytes = sum(sizes.values(), np.zeros(batch.num_rows, np.int64))
                if row_bytes.max(initial=0) > max_line_bytes:
                    yield from _with_oversize(first, batch, sizes, row_bytes, max_line_bytes)
                    continue
                # The common case, inline: one frame per row (millions of rows).
                for row_index, row in enumerate(batch.to_pylist(), first):
                    data = {key: value for key, value in row.items() if value is not None}
                    yield RawRecord(row_index + 1, data, row_index, 0, None)


def _column_bytes(batch: pa.RecordBatch) -> dict[str, Sizes]:
    """Per input column: the text bytes of each row (value_bytes)."""
    columns = zip(batch.schema.names, batch.columns, strict=True)
    return {name: value_bytes(column) for name, column in columns}


def _with_oversize(
    first: int,
    batch: pa.RecordBatch,
    sizes: dict[str, Sizes],
    row_bytes: Sizes,
    max_line_bytes: int,
) -> Iterator[RawRecord]:
    """The records of a batch holding rows over the limit: those are rejects with a preview,
    and only the others become Python objects."""
    over = row_bytes > max_line_bytes
    rows = iter(batch.filter(pa.array(~over)).to_pylist())
    for i in range(batch.num_rows):
        row_index = first + i
        if over[i]:
            preview = render_row(_preview(batch, i, sizes))
            problem = row_too_long(int(row_bytes[i]), max_line_bytes)
            yield RawRecord(row_index + 1, {}, row_index, 0, preview, problem)
            continue
        data = {key: value for key, value in next(rows).items() if value is not None}
        yield RawRecord(row_index + 1, data, row_index, 0, None)


def row_too_long(n_bytes: int, max_line_bytes: int, *, measured: bool = True) -> str:
    """The reject reason of a Parquet row of n_bytes of text over the limit."""
    size = f"{n_bytes} bytes" if measured else f"~{n_bytes} bytes (file metadata; not read)"
    return f"line too long: row of {size} > max_line_bytes ({max_line_bytes})"


def value_bytes(column: pa.Array) -> Sizes:
    """Per row: bytes of the text (string / binary) values in `column`, nested ones summed."""
    kind = column.type
    n = len(column)
    if pa.types.is_dictionary(kind):
        return value_bytes(column.dictionary_decode())
    if _is_text(kind):
        return pc.fill_null(pc.binary_length(column), 0).to_numpy().astype(np.int64)
    if pa.types.is_struct(kind):
        flat = column.flatten()  # parent nulls applied to the fields
        return sum((value_bytes(field) for field in flat), np.zeros(n, np.int64))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        items = pc.list_flatten(column)
        parents = pc.list_parent_indices(column).to_numpy()
        return np.bincount(parents, weights=value_bytes(items), minlength=n).astype(np.int64)
    return np.zeros(n, np.int64)


def _is_text(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_string_view(kind)
        or pa.types.is_binary_view(kind)
    )


def _preview(batch: pa.RecordBatch, i: int, sizes: dict[str, Sizes]) -> dict[str, Any]:
    """Row i with each text value cut to RAW_LIMIT_BYTES characters (nested columns larger
    than that shown by their size): what its reject keeps."""
    row: dict[str, Any] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        n_bytes = int(sizes[name][i])
        cell = column.slice(i, 1)
        if n_bytes <= RAW_LIMIT_BYTES:
            row[name] = cell.to_pylist()[0]
        elif pa.types.is_string(cell.type) or pa.types.is_large_string(cell.type):
            row[name] = pc.utf8_slice_codeunits(cell, 0, RAW_LIMIT_BYTES).to_pylist()[0]
        else:
            row[name] = f"({n_bytes} bytes, not shown)"
    return row


def _unread_reject(parquet: pq.ParquetFile, group: RowGroup, max_line_bytes: int) -> RawRecord:
    """The reject of a one-row group over the limit, its small columns read for the preview."""
    small = [name for name, n in group.column_bytes.items() if n <= RAW_LIMIT_BYTES]
    row: dict[str, Any] = {}
    if small:
        row = parquet.read_row_group(group.index, columns=small).to_pylist()[0]
    for name, n in group.column_bytes.items():
        if name not in small:
            row[name] = f"({n} bytes, not read)"
    problem = row_too_long(group.n_bytes, max_line_bytes, measured=False)
    row_index = group.first_row
    return RawRecord(row_index + 1, {}, row_index, 0, render_row(row), problem)


class ParquetRows:
    """Reads rows back by index (for the raw text of duplicate ids), one batch held at a time;
    fastest in file order."""

    def __init__(self, path: Path) -> None:
        self._parquet = open_parquet(path)
        self._groups = row_groups(self._parquet)
        self._starts = [group.first_row for group in self._groups]
        self._batches: Iterator[tuple[int, pa.RecordBatch]] = iter(())
        self._batch: tuple[int, pa.RecordBatch] | None = None

    def row(self, row_index: int) -> dict[str, Any]:
        """The row at 0-based `row_index`, all its input columns."""
        batch = self._batch
        if batch is None or not batch[0] <= row_index < batch[0] + batch[1].num_rows:
            batch = self._seek(row_index)
        first, rows = batch
        row: dict[str, Any] = rows.slice(row_index - first, 1).to_pylist()[0]
        return row

    def _seek(self, row_index: int) -> tuple[int, pa.RecordBatch]:
        group = self._groups[int(np.searchsorted(self._starts, row_index, side="right")) - 1]
        current = self._batch
        ahead_in_group = (
            current is not None
            and group.first_row <= current[0] < group.first_row + group.num_rows
            and row_index >= current[0]
        )
        if not ahead_in_group:  # another group, or back: read the group from its start
            self._batches = group_batches(self._parquet, group)
        for first, batch in self._batches:
            if row_index < first + batch.num_rows:
                self._batch = (first, batch)
                return self._batch
        raise IndexError(f"row {row_index} is not in {self._parquet}")

    def close(self) -> None:
        self._parquet.close()
