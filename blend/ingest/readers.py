"""Streaming readers: each yields the records of one file as RawRecords, in file order.

Invariant: memory is bounded by one record (JSONL: by max_line_bytes, whatever the file holds;
Parquet: by one record batch of about parquet.BATCH_BYTES, see blend/ingest/parquet.py), never
by the file. Blank lines / rows are skipped silently. RawReader reads a record's source text
back by its (offset, length) when it is needed later.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from blend.ingest.formats import SourceFormat
from blend.ingest.lines import UTF8_BOM, bounded_lines, skip_bom
from blend.ingest.parquet import ParquetRows, read_parquet_rows, require_prompt_column
from blend.ingest.records import (
    RAW_LIMIT_BYTES,
    IngestError,
    RawRecord,
    line_too_long,
    render_row,
)

_HASH_CHUNK_BYTES = 1 << 20
_READ_BUFFER_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class FileDigest:
    """The first pass over a file: its content hash and how many lines it has."""

    sha256: str  # hex sha256 of the file's bytes
    n_lines: int  # newline-terminated lines, plus one for a last line without a newline


class Digester:
    """Builds a FileDigest from a file's bytes given in order, chunk by chunk."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._n_lines = 0
        self._last = b"\n"
        self.n_bytes = 0

    def update(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._sha.update(chunk)
        self._n_lines += chunk.count(b"\n")
        self._last = chunk
        self.n_bytes += len(chunk)

    def digest(self) -> FileDigest:
        unterminated = not self._last.endswith(b"\n")  # a last line without a newline
        return FileDigest(self._sha.hexdigest(), self._n_lines + unterminated)


def digest_file(path: Path) -> FileDigest:
    """Hash `path` streaming 1 MiB chunks, counting lines on the way (for progress)."""
    digester = Digester()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK_BYTES):
            digester.update(chunk)
    return digester.digest()


def read_records(path: Path, fmt: SourceFormat, max_line_bytes: int) -> Iterator[RawRecord]:
    """The records of `path` in file order; IngestError if the file cannot be read as `fmt`."""
    if fmt is SourceFormat.CSV:
        return read_csv(path, max_line_bytes)
    if fmt is SourceFormat.PARQUET:
        return read_parquet(path, max_line_bytes)
    return read_jsonl(path, max_line_bytes)


def read_jsonl(path: Path, max_line_bytes: int) -> Iterator[RawRecord]:
    """One record per non-blank line; data is the line's bytes (not yet parsed)."""
    with path.open("rb", buffering=_READ_BUFFER_BYTES) as f:
        skip_bom(f)
        for line_no, offset, text, n_bytes in bounded_lines(f, max_line_bytes):
            if n_bytes > max_line_bytes:
                problem = line_too_long(n_bytes, max_line_bytes)
                yield RawRecord(line_no, b"", offset, n_bytes, text, problem)
            elif text and not text.isspace():
                yield RawRecord(line_no, text, offset, n_bytes, text)


def read_csv(path: Path, max_line_bytes: int) -> Iterator[RawRecord]:
    """One record per CSV row after the header; line_no is the file line where it starts.

    Cells are strings; empty cells are left out (absent). Invalid UTF-8 is read with
    surrogateescape so that the row is rejected with its bytes shown instead of failing the
    file. The csv module reads a physical line whole; fields are capped at max_line_bytes
    through csv.field_size_limit.
    """
    # Process-wide setting: only ever raised, so other csv users keep working.
    csv.field_size_limit(max(csv.field_size_limit(), max_line_bytes))
    offset = len(UTF8_BOM) if _starts_with_bom(path) else 0
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        consumed: list[str] = []  # physical lines of the record being read: its source text
        # strict: an unterminated quote is an error, not a field that swallows the rest.
        reader = csv.reader(_recording(f, consumed), strict=True)
        header = _csv_header(path, reader)
        offset += len(_encode("".join(consumed)))
        consumed.clear()
        last_line = reader.line_num
        while True:
            try:
                fields, problem = next(reader), None
            except StopIteration:
                return
            except csv.Error as error:
                fields, problem = [], _csv_problem(error, max_line_bytes)
            start_line, last_line = last_line + 1, reader.line_num
            text = "".join(consumed)
            consumed.clear()
            if problem is None and not any(fields):
                offset += len(_encode(text))
                continue  # blank line, or a row of empty cells
            record = _csv_record(start_line, offset, header, fields, text, problem, max_line_bytes)
            offset += record.length + _terminator_bytes(text)
            yield record


def _starts_with_bom(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(UTF8_BOM)) == UTF8_BOM


def _encode(text: str) -> bytes:
    # surrogateescape gives back exactly the bytes an undecodable sequence was read from.
    return text.encode("utf-8", errors="surrogateescape")


def _terminator_bytes(text: str) -> int:
    return len(text) - len(text.rstrip("\r\n"))


def _recording(lines: Iterator[str], consumed: list[str]) -> Iterator[str]:
    for line in lines:
        consumed.append(line)
        yield line


def _csv_header(path: Path, reader: Any) -> list[str]:
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise IngestError(f"{path}: no CSV header row (the file holds no data)") from None
    except csv.Error as error:
        raise IngestError(f"{path}: unreadable CSV header: {error}") from None
    require_prompt_column(path, header)
    return header


def _csv_problem(error: csv.Error, max_line_bytes: int) -> str:
    if "field larger than field limit" in str(error):
        return f"line too long: a field is larger than max_line_bytes ({max_line_bytes})"
    return f"malformed CSV: {error}"


def _csv_record(
    line_no: int,
    offset: int,
    header: list[str],
    fields: list[str],
    text: str,
    problem: str | None,
    max_line_bytes: int,
) -> RawRecord:
    text = text.rstrip("\r\n")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as bad:  # lone surrogates stand for the undecodable bytes
        raw = _encode(text)
        problem = problem or f"invalid UTF-8: undecodable byte at character {bad.start}"
    if problem is None and len(raw) > max_line_bytes:
        problem = line_too_long(len(raw), max_line_bytes)
    if problem is None and len(fields) != len(header):
        problem = f"malformed CSV: {len(fields)} fields but the header has {len(header)}"
    if problem is not None:
        return RawRecord(line_no, {}, offset, len(raw), raw, problem)
    row = {name: value for name, value in zip(header, fields, strict=True) if value != ""}
    return RawRecord(line_no, row, offset, len(raw), raw)


def read_parquet(path: Path, max_line_bytes: int) -> Iterator[RawRecord]:
    """One record per row (line_no = row index + 1); only the input columns are read, and a
    row over max_line_bytes is a reader reject (blend/ingest/parquet.py)."""
    return read_parquet_rows(path, max_line_bytes)


class RawReader:
    """Reads back the source text of records by their RawRecord (offset, length).

    At most RAW_LIMIT_BYTES + 1 bytes per record (enough for cut_raw to cut on a character
    boundary); Parquet rows are rendered as JSON, one record batch held at a time. Reads are
    fastest in file order.
    """

    def __init__(self, path: Path, fmt: SourceFormat) -> None:
        self._parquet: ParquetRows | None = None
        self._text: BinaryIO | None = None
        if fmt is SourceFormat.PARQUET:
            self._parquet = ParquetRows(path)
        else:
            self._text = path.open("rb")

    def raw_at(self, offset: int, length: int) -> bytes:
        """The source text at (offset, length), cut to RAW_LIMIT_BYTES + 1 bytes at most."""
        if self._text is not None:
            self._text.seek(offset)
            return self._text.read(min(length, RAW_LIMIT_BYTES + 1))
        assert self._parquet is not None
        return render_row(self._parquet.row(offset))

    def close(self) -> None:
        if self._text is not None:
            self._text.close()
        if self._parquet is not None:
            self._parquet.close()

    def __enter__(self) -> RawReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
