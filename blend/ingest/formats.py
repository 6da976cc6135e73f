"""Detect an input file's format from its name and, for JSON Lines, its first record."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path, PurePosixPath

import orjson

from blend.ingest.lines import bounded_lines, skip_bom
from blend.ingest.records import IngestError

# Lines looked at to find the first parseable JSON object when telling OpenAI batch files apart.
_PEEK_LINES = 100


class SourceFormat(StrEnum):
    """The input formats; the value is what `datasets.source_format` stores."""

    JSONL = "jsonl"
    OPENAI_BATCH = "openai-batch"
    CSV = "csv"
    PARQUET = "parquet"


_BY_SUFFIX = {
    ".jsonl": SourceFormat.JSONL,
    ".ndjson": SourceFormat.JSONL,
    ".json": SourceFormat.JSONL,
    ".csv": SourceFormat.CSV,
    ".parquet": SourceFormat.PARQUET,
    ".pq": SourceFormat.PARQUET,
}


def detect_format(path: Path, max_line_bytes: int) -> SourceFormat:
    """The format of `path`: by suffix, and JSON Lines whose first object is an OpenAI batch
    request (has "body" and "url" or "method") is OPENAI_BATCH.

    Raises IngestError for an unknown suffix.
    """
    fmt = format_by_suffix(path.name, str(path))
    if fmt is SourceFormat.JSONL and _looks_like_openai_batch(path, max_line_bytes):
        return SourceFormat.OPENAI_BATCH
    return fmt


def format_by_suffix(name: str, where: str) -> SourceFormat:
    """The format a file name's suffix stands for (JSONL for an OpenAI batch file too);
    IngestError naming `where` for an unknown suffix."""
    suffix = PurePosixPath(name).suffix
    fmt = _BY_SUFFIX.get(suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_BY_SUFFIX))
        raise IngestError(
            f"{where}: unknown input format {suffix or '(no suffix)'!r}; "
            f"expected a file ending in one of {known}"
        )
    return fmt


def is_openai_batch_request(obj: object) -> bool:
    """True for an object shaped like one line of an OpenAI batch input file."""
    return isinstance(obj, dict) and "body" in obj and ("url" in obj or "method" in obj)


def _looks_like_openai_batch(path: Path, max_line_bytes: int) -> bool:
    first = _first_json_object(path, max_line_bytes)
    return first is not None and is_openai_batch_request(first)


def _first_json_object(path: Path, max_line_bytes: int) -> dict[str, object] | None:
    """The first line among the first _PEEK_LINES that parses as a JSON object, if any.

    Reads are bounded by max_line_bytes, so a huge first line is never loaded whole.
    """
    with path.open("rb") as f:
        skip_bom(f)
        for line in bounded_lines(f, max_line_bytes):
            if line.line_no > _PEEK_LINES:
                break
            if line.n_bytes > max_line_bytes:
                continue  # oversize: the reader rejects it; look at the next line
            try:
                obj = orjson.loads(line.text)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    return None
