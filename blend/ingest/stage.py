"""ingest_file: one input file -> one snapshot of a dataset in the store.

Two passes over the file: the first hashes its bytes (same content, same dataset -> nothing
to do), the second streams, validates and writes the records in batches inside one
transaction, which commits prompts, rejects and the `datasets` row together. An input named
by URI is first copied into the store, hashed on the way (blend/ingest/remote.py), and the
copy ingested; its `datasets` row records the URI (less credentials) and the same hash.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from blend.ingest.fast import decide_file
from blend.ingest.formats import SourceFormat, detect_format
from blend.ingest.inputs import check_input
from blend.ingest.load import (
    Source,
    StagedCounts,
    Stager,
    Target,
    assign_ids,
    bounded_memory,
    duplicates,
    find_snapshot,
    open_snapshot,
    publish,
)
from blend.ingest.readers import FileDigest, RawReader, digest_file, read_records
from blend.ingest.records import (
    IngestError,
    IngestReport,
    PromptRow,
    RawRecord,
    RejectRow,
    raw_text,
)
from blend.ingest.remote import RemoteInput, spooled
from blend.ingest.validate import Validator
from blend.store.database import Store, transaction
from blend.store.names import NameKind, validate_name

# Called after each staged batch with (units done, units in total): lines for JSONL and CSV,
# rows for Parquet. `done` may stop short of `total` (blank lines are not reported).
Progress = Callable[[int, int], None]


def ingest_file(
    store: Store,
    input_path: str | Path | RemoteInput,
    dataset: str,
    *,
    max_line_bytes: int = 1 << 20,
    batch_rows: int = 50_000,
    progress: Progress | None = None,
    vectorised: bool = True,
) -> IngestReport:
    """Ingest `input_path` as the next snapshot of `dataset`, or find it already ingested.

    max_line_bytes: longer JSONL lines (CSV records, Parquet rows) are rejected without being
    loaded whole.
    batch_rows: records validated and staged per batch (bounds Python memory).
    vectorised: JSON Lines take the vectorised path (blend/ingest/fast.py), which hands only
    the lines it cannot decide to the per-record validator; False validates every record one
    by one (same tables, slower: for comparison).
    input_path: a local path, or a URI as text (s3://, gs://, hf://, https://...; see
    blend/ingest/remote.py), or what check_input returned for either.
    Raises IngestError when nothing at all could be read: the file or object is missing,
    unreachable, a loop of links, unreadable or empty, its format is unknown, or no record
    was accepted (check_input tells the first few before the store is opened).
    """
    started = time.perf_counter()
    validate_name(dataset, NameKind.DATASET, "ingest_file(dataset=...)")
    _check_arguments(dataset, max_line_bytes, batch_rows)
    checked = check_input(input_path)
    args = (max_line_bytes, batch_rows, vectorised, progress, started)
    if isinstance(checked, Path):
        return _ingest_local(store, checked, dataset, str(checked), None, *args)
    with spooled(checked, store.tmp_dir) as spool:
        copies = (str(spool.path), str(spool.path.resolve()))
        try:
            copy = check_input(spool.path)  # empty, compressed: refused as a local file is
            assert isinstance(copy, Path)
            return _ingest_local(store, copy, dataset, checked.shown, spool.digest, *args)
        except IngestError as error:  # said of the object, not of its copy
            message = str(error)
            for copied in copies:
                message = message.replace(copied, checked.shown)
            raise IngestError(message) from None


def _ingest_local(
    store: Store,
    path: Path,
    dataset: str,
    source_uri: str,
    digest: FileDigest | None,
    max_line_bytes: int,
    batch_rows: int,
    vectorised: bool,
    progress: Progress | None,
    started: float,
) -> IngestReport:
    """ingest_file of the local file `path` (checked), recorded as coming from `source_uri`
    (the path itself, or the URI it is a copy of); `digest`: the copy's, computed on the way
    in (None: hash the file here)."""
    fmt = detect_format(path, max_line_bytes)
    job = _FileJob(path, fmt, max_line_bytes, batch_rows, vectorised and fmt is SourceFormat.JSONL)
    version = _version(path)
    digest = digest or _digest(path)
    source = Source(dataset, source_uri, digest.sha256, job.fmt.value)
    n_records = _total_units(path, job.fmt, digest.n_lines)  # at most; sizes DuckDB's memory
    with store.connect(views=False) as con, bounded_memory(con, n_records):
        existing = find_snapshot(con, dataset, digest.sha256)
        if existing is not None:
            return dataclasses.replace(existing, seconds=time.perf_counter() - started)
        with transaction(con):  # the whole ingest: nothing is visible before the commit
            target = open_snapshot(con, dataset)
            validator = Validator(job.fmt)
            staged = _stage_file(con, target, job, validator, digest.n_lines, progress)
            if _version(path) != version:
                raise IngestError(
                    f"{path}: the file changed while it was being ingested; nothing was written, "
                    "run the ingest again"
                )
            published = publish(con, source, target, staged)
    return IngestReport(
        dataset=dataset,
        snapshot=published.snapshot,
        source_uri=source.source_uri,
        source_sha256=source.source_sha256,
        source_format=source.source_format,
        n_rows=published.n_rows,
        n_rejected=published.n_rejected,
        reused=False,
        reject_reasons=dict(sorted(staged.reject_reasons.items())),
        seconds=time.perf_counter() - started,
        n_named_model=validator.named_models.n_lines,
        named_models=dict(validator.named_models.names.most_common()),
    )


@dataclass(frozen=True, slots=True)
class _FileJob:
    """One file to stage and how."""

    path: Path  # absolute
    fmt: SourceFormat
    max_line_bytes: int
    batch_rows: int
    vectorised: bool  # take blend/ingest/fast.py (plain JSON Lines only)


def _stage_file(
    con: duckdb.DuckDBPyConnection,
    target: Target,
    job: _FileJob,
    validator: Validator,
    n_lines: int,
    progress: Progress | None,
) -> StagedCounts:
    """Stage every record of the file, then its duplicate ids as rejects.

    Raises IngestError when no record was accepted.
    """
    stager = Stager(con, target)
    with _gc_paused():
        _stage_records(stager, job, validator, n_lines, progress)
    _require_accepted(job.path, stager.counts)
    if assign_ids(con, target, stager.counts) > 0:
        _stage_duplicates(con, stager, job)
    return stager.counts


def _stage_records(
    stager: Stager, job: _FileJob, validator: Validator, n_lines: int, progress: Progress | None
) -> None:
    """Read, validate and stage the records, job.batch_rows at a time."""
    total = _total_units(job.path, job.fmt, n_lines)
    if job.vectorised:
        for decided in decide_file(job.path, job.max_line_bytes, job.batch_rows, validator):
            stager.append_decided(decided.accepted, *_validate_batch(decided.undecided, validator))
            if progress is not None:
                progress(decided.last_line, total)
        return
    records = read_records(job.path, job.fmt, job.max_line_bytes)
    for batch in _batches(records, job.batch_rows):
        stager.append(*_validate_batch(batch, validator))
        if progress is not None:
            progress(batch[-1].line_no, total)


def _stage_duplicates(con: duckdb.DuckDBPyConnection, stager: Stager, job: _FileJob) -> None:
    """Stage the prompts whose id came earlier as rejects, their source text read back."""
    with RawReader(job.path, job.fmt) as reader:
        for page in duplicates(con, job.batch_rows):
            rejects = [
                RejectRow(d.line_no, d.reason, raw_text(reader.raw_at(d.raw_offset, d.raw_length)))
                for d in page
            ]
            stager.append([], rejects)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: the records made here are acyclic (freed by
    reference counting), and the collector's passes over them cost about a quarter of the
    validation time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_arguments(dataset: str, max_line_bytes: int, batch_rows: int) -> None:
    if not dataset or not dataset.strip():
        raise ValueError(f"dataset must be a non-empty name, got {dataset!r}")
    if max_line_bytes < 1:
        raise ValueError(f"max_line_bytes must be >= 1, got {max_line_bytes}")
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")


def _version(path: Path) -> tuple[int, int]:
    """(size, mtime in ns): changes when the file is rewritten between the two passes."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _digest(path: Path) -> FileDigest:
    try:
        return digest_file(path)
    except OSError as error:
        raise IngestError(f"{path}: cannot read: {error}") from None


def _total_units(path: Path, fmt: SourceFormat, n_lines: int) -> int:
    if fmt is SourceFormat.PARQUET:
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError):  # the reader reports this with a clear message
            return 0
    return n_lines


def _batches(records: Iterator[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    while batch := list(islice(records, size)):
        yield batch


def _validate_batch(
    batch: list[RawRecord], validator: Validator
) -> tuple[list[PromptRow], list[RejectRow]]:
    prompts: list[PromptRow] = []
    rejects: list[RejectRow] = []
    validate = validator.validate
    for record in batch:
        outcome = validate(record)
        if isinstance(outcome, PromptRow):
            prompts.append(outcome)
        else:
            rejects.append(outcome)
    return prompts, rejects


def _require_accepted(path: Path, counts: StagedCounts) -> None:
    """IngestError naming the file and the reasons when no record was accepted."""
    if counts.n_prompts > 0:
        return
    if counts.n_rejects == 0:
        raise IngestError(f"{path}: no records found (only blank lines{_header_note(path)})")
    summary = "; ".join(
        f"{category}: {n} (first on line {counts.first_reject_line[category]})"
        for category, n in counts.reject_reasons.most_common()
    )
    raise IngestError(
        f"{path}: no valid prompts among {counts.n_rejects} records: {summary}{_array_hint(path)}"
    )


def _header_note(path: Path) -> str:
    return " after the CSV header" if path.suffix.lower() == ".csv" else ""


def _array_hint(path: Path) -> str:
    """A hint when a JSON file holds one array rather than one object per line."""
    if path.suffix.lower() not in (".json", ".jsonl", ".ndjson"):
        return ""
    with path.open("rb") as f:
        head = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        return " (the file looks like one JSON array; ingest reads JSON Lines: one object per line)"
    return ""
