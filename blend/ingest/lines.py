"""Bounded line reading: a line longer than the limit is never held in memory whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

UTF8_BOM = b"\xef\xbb\xbf"
# Chunk size used to skip the rest of an oversize line.
_SKIP_CHUNK_BYTES = 1 << 16


class Line(NamedTuple):
    """One line of a binary file."""

    line_no: int  # 1-based
    offset: int  # byte offset of the line's first byte in the file
    text: bytes  # the line without its terminator; for an oversize line only its first bytes
    n_bytes: int  # full length of the line without its terminator


def bounded_lines(f: BinaryIO, max_line_bytes: int) -> Iterator[Line]:
    """The lines of a binary file from its current position.

    A line longer than max_line_bytes comes back with only its first max_line_bytes + 1
    bytes (n_bytes > max_line_bytes tells it apart): memory stays O(max_line_bytes)
    whatever the file holds.
    """
    limit = max_line_bytes + 1
    readline = f.readline
    line_no = 0
    offset = f.tell()
    while chunk := readline(limit):
        line_no += 1
        if len(chunk) == limit and chunk[-1] != 0x0A:  # no newline within the limit: oversize
            rest, terminator = skip_rest_of_line(f)
            yield Line(line_no, offset, chunk, len(chunk) + rest)
            offset += len(chunk) + rest + terminator
            continue
        text = chunk.rstrip(b"\r\n")
        yield Line(line_no, offset, text, len(text))
        offset += len(chunk)


def skip_bom(f: BinaryIO) -> None:
    """Advance past a UTF-8 byte order mark at the current position, if there is one."""
    start = f.tell()
    if f.read(len(UTF8_BOM)) != UTF8_BOM:
        f.seek(start)


def skip_rest_of_line(f: BinaryIO) -> tuple[int, int]:
    """Read up to and including the next newline in bounded chunks.

    Returns (bytes skipped before the newline, 1 if a newline was read else 0).
    """
    skipped = 0
    while chunk := f.readline(_SKIP_CHUNK_BYTES):
        if chunk[-1] == 0x0A:
            return skipped + len(chunk) - 1, 1
        skipped += len(chunk)
    return skipped, 0
