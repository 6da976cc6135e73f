"""Typed values that cross the ingest modules: raw records, outcomes, the report, the error.

Hot-path values (one per input line) are NamedTuples: immutable, typed and cheap to create;
the once-per-file report is a frozen dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

# rejects.raw keeps at most this many bytes of the offending line (schema: "truncated to 4 KiB").
RAW_LIMIT_BYTES = 4096


class IngestError(Exception):
    """Nothing at all could be read from an input file; the message names the file and why."""


class RawRecord(NamedTuple):
    """One record as a reader found it, before validation.

    `data` is the line's bytes for JSONL (terminator removed) or a column -> value dict for
    CSV / Parquet. `problem` is set when the reader itself rejects the record (e.g. an
    oversize line). (offset, length) locate the record's source text so that it can be read
    back later without keeping it (RawReader).
    """

    line_no: int  # 1-based line (JSONL, CSV: where the record starts) or row (Parquet)
    data: bytes | dict[str, Any]
    offset: int  # JSONL / CSV: byte offset of the record in the file; Parquet: 0-based row
    length: int  # JSONL / CSV: bytes of the record, line terminator excluded; Parquet: 0
    raw: bytes | None  # source text (maybe only its start); None: a Parquet row (render_row)
    problem: str | None = None  # reader-level reject reason, "<category>: <detail>"


class PromptRow(NamedTuple):
    """An accepted request, in the column order of the staging table."""

    line_no: int
    request_id: str | None  # the input's custom_id / id; None: derived from the hash in SQL
    prompt_sha256: str  # hex sha256 of `prompt`, or of `messages_json`
    prompt: str | None  # completion prompt; None for chat requests
    messages_json: str | None  # canonical (sorted keys) chat messages; None for raw prompts
    sampling_json: str  # canonical validated sampling parameters, max_tokens included
    max_tokens: int
    raw_offset: int  # RawRecord.offset: to read the source text back if the id is a duplicate
    raw_length: int  # RawRecord.length


class RejectRow(NamedTuple):
    """A rejected record; `reason` starts with its category, e.g. "malformed JSON: ..."."""

    line_no: int
    reason: str
    raw: str  # source text, at most RAW_LIMIT_BYTES of it, undecodable bytes backslash-escaped


def line_too_long(n_bytes: int, max_line_bytes: int) -> str:
    """The reject reason of a line of n_bytes (terminator excluded) over the limit."""
    return f"line too long: {n_bytes} bytes > max_line_bytes ({max_line_bytes})"


def reason_category(reason: str) -> str:
    """The category of a reject reason: the text before the first colon."""
    return reason.split(":", 1)[0]


def cut_raw(data: bytes) -> bytes:
    """At most RAW_LIMIT_BYTES of `data`, never ending inside a UTF-8 multi-byte character."""
    if len(data) <= RAW_LIMIT_BYTES:
        return data
    end = RAW_LIMIT_BYTES
    # Step back over continuation bytes (0b10xxxxxx) so a character is never split.
    while end > 0 and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end]


def render_row(row: dict[str, Any]) -> bytes:
    """A Parquet row shown as a JSON object (its non-null columns), for rejects.raw."""
    return orjson.dumps(
        {key: value for key, value in row.items() if value is not None}, default=str
    )


def raw_text(data: bytes) -> str:
    """`data` cut to RAW_LIMIT_BYTES as text, invalid bytes kept visible as \\xNN escapes."""
    return cut_raw(data).decode("utf-8", errors="backslashreplace")


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What one `ingest_file` call did (or found already done, when `reused`)."""

    dataset: str
    snapshot: int  # 1, 2, ... per dataset
    source_uri: str  # absolute path of the input file
    source_sha256: str  # hex sha256 of the file's bytes
    source_format: str  # jsonl | openai-batch | csv | parquet
    n_rows: int  # accepted prompts
    n_rejected: int  # rows in `rejects` for this snapshot
    reused: bool  # True: this content was already ingested; nothing was written
    reject_reasons: dict[str, int] = field(default_factory=dict)  # category -> count
    seconds: float = 0.0  # wall time of this call
    # OpenAI batch input: accepted lines whose body.model names a model (not used: the run's
    # model answers them), and the names with their line counts (the first few names)
    n_named_model: int = 0
    named_models: dict[str, int] = field(default_factory=dict)
