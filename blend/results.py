"""Result rows and the Parquet part writer.

Layout: <store>/results/dataset=<name>/run_id=<id>/part-<n>-<uuid>.parquet, one row per
request. A part is written under a hidden temporary name and renamed into place when its
footer is complete, so a crash leaves either a whole part or none: readers (the `results`
view, resume) only ever see finished parts.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

RESULT_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("snapshot", pa.int32()),
        ("request_id", pa.string()),
        ("seq", pa.int64()),  # position in the plan
        ("prompt_sha256", pa.string()),
        ("output_text", pa.string()),
        ("output_token_ids", pa.list_(pa.int32())),
        ("finish_reason", pa.string()),  # stop | length | abort | error
        ("n_prompt_tokens", pa.int32()),
        ("n_output_tokens", pa.int32()),
        ("n_cached_tokens", pa.int32()),  # prompt tokens served from the prefix cache
        ("error", pa.string()),  # NULL for completed requests
        ("run_id", pa.string()),
        ("plan_id", pa.string()),
        ("model", pa.string()),
        ("model_sha256", pa.string()),
        ("tokenizer_sha256", pa.string()),
        ("sampling_json", pa.string()),
        ("engine", pa.string()),
        ("engine_version", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One request's outcome, with its lineage; field names are the Parquet columns."""

    dataset: str
    snapshot: int
    request_id: str
    seq: int
    prompt_sha256: str
    output_text: str | None
    output_token_ids: list[int] | None
    finish_reason: str
    n_prompt_tokens: int
    n_output_tokens: int
    n_cached_tokens: int
    error: str | None
    run_id: str
    plan_id: str
    model: str
    model_sha256: str
    tokenizer_sha256: str
    sampling_json: str
    engine: str
    engine_version: str
    started_at: datetime
    finished_at: datetime


def run_dir(results_dir: Path, dataset: str, run_id: str) -> Path:
    return results_dir / f"dataset={dataset}" / f"run_id={run_id}"


def write_part(
    directory: Path, rows: Sequence[ResultRow], metadata: dict[str, str], part_index: int
) -> Path:
    """Write rows as one Parquet part (atomically) with file-level key-value metadata."""
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([asdict(r) for r in rows], schema=RESULT_SCHEMA)
    table = table.replace_schema_metadata(metadata)
    final = directory / f"part-{part_index:05d}-{uuid.uuid4().hex[:8]}.parquet"
    temporary = directory / f".tmp-{final.name}"
    pq.write_table(table, temporary, compression="zstd")
    _fsync(temporary)
    os.replace(temporary, final)
    return final


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def finished_parts(directory: Path) -> list[Path]:
    """The complete parts of a run folder, in write order."""
    return sorted(directory.glob("part-*.parquet")) if directory.is_dir() else []


def done_request_ids(directory: Path) -> set[str]:
    """Request ids that already have a row in the run's finished parts (for resume)."""
    done: set[str] = set()
    for part in finished_parts(directory):
        done.update(pq.read_table(part, columns=["request_id"]).column(0).to_pylist())
    return done


def remove_temporary_parts(directory: Path) -> int:
    """Delete parts a crashed writer left half-written; returns how many."""
    stale = list(directory.glob(".tmp-*")) if directory.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def read_metadata(part: Path) -> dict[str, str]:
    """The file-level key-value metadata of a part."""
    raw = pq.read_schema(part).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items()}


def rows_in(parts: Iterable[Path]) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
