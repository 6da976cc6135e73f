"""Result rows and the Parquet part writer.

Layout: <store>/results/dataset=<name>/run_id=<id>/part-<n>-<uuid>.parquet, one row per
request. A part is written under a hidden temporary name and renamed into place when its
footer is complete, so a crash leaves either a whole part or none: readers (the `results`
view, resume) only ever see finished parts.

A finished part damaged afterwards (a truncated copy, a bad disk) is found by
`unreadable_parts` and moved, never deleted, to <store>/quarantine/ with the same relative
path by `quarantine_parts`, which appends what it moved to <store>/quarantine/quarantine.jsonl.
Its requests then have no result, so the next incremental run plans them again.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from blend.store.names import NameKind, path_under, validate_name

if TYPE_CHECKING:
    from blend.store.lineage import RunLineage


class FinishedRequest(Protocol):
    """What the store needs of one answered request (blend.engines.base.EngineOutput is
    one): the store depends on no engine."""

    @property
    def request_id(self) -> str: ...
    @property
    def output_text(self) -> str | None: ...
    @property
    def output_token_ids(self) -> list[int] | None: ...
    @property
    def finish_reason(self) -> str: ...
    @property
    def n_prompt_tokens(self) -> int: ...
    @property
    def n_output_tokens(self) -> int: ...
    @property
    def n_cached_tokens(self) -> int: ...
    @property
    def error(self) -> str | None: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def finished_at(self) -> datetime: ...


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
        ("model_revision", pa.string()),  # Hugging Face commit; NULL: a folder outside the cache
        ("tokenizer_sha256", pa.string()),
        ("sampling_json", pa.string()),
        ("engine", pa.string()),
        ("engine_version", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(slots=True)  # not frozen: one a request, and a frozen __init__ costs 3x as much
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
    model_revision: str | None = None  # the model's Hugging Face commit (RunLineage)

    @classmethod
    def of(
        cls,
        lineage: RunLineage,
        output: FinishedRequest,
        *,
        seq: int,
        prompt_sha256: str,
        sampling_json: str,
    ) -> ResultRow:
        """The row of `output` (plan position `seq`) in the run `lineage` describes."""
        return cls(
            dataset=lineage.dataset,
            snapshot=lineage.snapshot,
            request_id=output.request_id,
            seq=seq,
            prompt_sha256=prompt_sha256,
            output_text=output.output_text,
            output_token_ids=output.output_token_ids,
            finish_reason=output.finish_reason,
            n_prompt_tokens=output.n_prompt_tokens,
            n_output_tokens=output.n_output_tokens,
            n_cached_tokens=output.n_cached_tokens,
            error=output.error,
            run_id=lineage.run_id,
            plan_id=lineage.plan_id,
            model=lineage.model,
            model_sha256=lineage.model_sha256,
            tokenizer_sha256=lineage.tokenizer_sha256,
            sampling_json=sampling_json,
            engine=lineage.engine,
            engine_version=lineage.engine_version,
            started_at=output.started_at,
            finished_at=output.finished_at,
            model_revision=lineage.model_revision,
        )


def run_dir(results_dir: Path, dataset: str, run_id: str) -> Path:
    """The run's results folder; refuses names that break the naming rule (blend.store.names), and
    a dataset or run folder that is a symbolic link (ResultsFolderError)."""
    validate_name(run_id, NameKind.RUN_ID, "the results folder")
    refuse_link(dataset_dir(results_dir, dataset) / f"run_id={run_id}")
    return path_under(results_dir, f"dataset={dataset}", f"run_id={run_id}")


def dataset_dir(results_dir: Path, dataset: str) -> Path:
    """The dataset's results folder, checked as run_dir checks it (the CLI asks before it
    builds anything)."""
    validate_name(dataset, NameKind.DATASET, "the results folder")
    refuse_link(results_dir / f"dataset={dataset}")  # before path_under resolves the link
    return path_under(results_dir, f"dataset={dataset}")


def refuse_link(folder: Path) -> Path:
    """`folder`, unless it is a symbolic link (ResultsFolderError)."""
    # A link would put a run's parts in another folder of the store (another dataset's: the
    # `results` view would show them twice) or outside it.
    if folder.is_symlink():
        raise ResultsFolderError(
            f"{folder} is a symbolic link (to {os.readlink(folder)}): blend writes results "
            "only into real folders; remove the link and run again"
        )
    return folder


def result_table(rows: Sequence[ResultRow], metadata: dict[str, str]) -> pa.Table:
    """Rows as a table of RESULT_SCHEMA with file-level key-value metadata."""
    # column by column: dataclasses.asdict would deep-copy every token list
    columns = {name: [getattr(r, name) for r in rows] for name in RESULT_SCHEMA.names}
    return pa.Table.from_pydict(columns, schema=RESULT_SCHEMA).replace_schema_metadata(metadata)


def write_part(
    directory: Path, rows: Sequence[ResultRow], metadata: dict[str, str], part_index: int
) -> Path:
    """Write rows as one Parquet part (atomically) with file-level key-value metadata."""
    directory.mkdir(parents=True, exist_ok=True)
    table = result_table(rows, metadata)
    final = directory / f"part-{part_index:05d}-{uuid.uuid4().hex[:8]}.parquet"
    # Not `*.parquet`: the results glob (`**/*.parquet`) of a reader in another process, a
    # `blend query` or a second run, would match it, and read it half-written.
    temporary = directory / f".tmp-{final.name}.partial"
    try:
        pq.write_table(table, temporary, compression="zstd")
        _fsync(temporary)
        os.replace(temporary, final)
    except OSError as exc:  # disk full, read-only: no half part is left behind, not even hidden
        temporary.unlink(missing_ok=True)
        raise ResultWriteError(
            f"cannot write result part {final} ({exc.strerror or exc}): free space or fix "
            "permissions, then resume the run (`blend run` again, or `blend execute --resume`); "
            "its finished parts are kept"
        ) from exc
    _fsync(directory)  # the rename itself survives a power loss
    return final


# (rows, footer metadata, part index) -> where the part went
PartWrite = Callable[[Sequence[ResultRow], dict[str, str], int], object]


class ResultWriteError(OSError):
    """A result part could not be written (disk full, read-only folder); nothing of it was
    left in the run folder."""


class ResultsFolderError(ResultWriteError):
    """A run's results folder is refused before anything is written into it."""


Finished = TypeVar("Finished")  # what an engine step reports per finished request


class PartWriter:
    """Buffers result rows and writes them as atomic parts by count or age.

    A part is due every `flush_rows` rows or when the oldest buffered row is `flush_seconds`
    old (the caller checks `flush_if_due` after every engine step). Parts are written by one
    background thread (Parquet encoding and fsync release the GIL), in order, so writing
    overlaps the engine's next steps. Each part's footer: `metadata`, `part_metadata()` (asked
    at flush time) and `blend.sampling_json`, the distinct sampling parameters of its rows.
    """

    def __init__(
        self,
        directory: Path,
        metadata: dict[str, str],
        *,
        flush_rows: int,
        flush_seconds: float,
        start_index: int,
        part_metadata: Callable[[], dict[str, str]] | None = None,
        write: PartWrite | None = None,
    ) -> None:
        self._directory = directory
        # how a part reaches storage (default: write_part into `directory`)
        self._write: PartWrite = write or partial(write_part, directory)
        self._metadata = metadata
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._part_metadata = part_metadata
        self._buffer: list[ResultRow] = []
        self._oldest = 0.0  # monotonic time the oldest buffered row arrived
        self._next_index = start_index  # part file numbers follow the rows before them
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blend-parts")
        self._writing: list[Future[object]] = []
        self.rows_added = 0
        self.output_tokens = 0

    def add(self, rows: Iterable[ResultRow]) -> None:
        if not self._buffer:
            self._oldest = time.monotonic()
        for row in rows:
            self._buffer.append(row)
            self.rows_added += 1
            self.output_tokens += row.n_output_tokens

    def write_steps(
        self,
        steps: Iterable[Sequence[Finished]],
        row_of: Callable[[Finished], ResultRow],
        on_rows: Callable[[], None] | None = None,
    ) -> None:
        """Write what an engine loop finishes, one list per engine step: each output as
        `row_of` makes it, parts flushed when due after every step (also while nothing
        finishes), `on_rows` told after each step that finished some. The caller closes."""
        for finished in steps:
            self.write_step(finished, row_of, on_rows)

    def write_step(
        self,
        finished: Sequence[Finished],
        row_of: Callable[[Finished], ResultRow],
        on_rows: Callable[[], None] | None = None,
    ) -> None:
        """One engine step's outputs (write_steps, for a caller that owns the loop)."""
        if finished:
            self.add(row_of(output) for output in finished)
            if on_rows is not None:
                on_rows()
        self.flush_if_due()

    def flush_if_due(self) -> None:
        if self._buffer and (
            len(self._buffer) >= self._flush_rows
            or time.monotonic() - self._oldest >= self._flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Hand the buffered rows to the writer thread as one part."""
        self._check_written(wait=False)
        if not self._buffer:
            return
        sampling = sorted({r.sampling_json for r in self._buffer})
        metadata = {
            **self._metadata,
            **(self._part_metadata() if self._part_metadata else {}),
            "blend.sampling_json": orjson.dumps([orjson.loads(s) for s in sampling]).decode(),
        }
        self._writing.append(
            self._pool.submit(self._write, self._buffer, metadata, self._next_index)
        )
        self._next_index += len(self._buffer)
        self._buffer = []

    def sync(self) -> None:
        """Flush, then wait until every part is on disk (the writer stays open)."""
        self.flush()
        self._check_written(wait=True)

    def close(self) -> None:
        """Flush, then wait until every part is on disk; re-raises a failed write."""
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)
        self._check_written(wait=True)

    def _check_written(self, *, wait: bool) -> None:
        still_writing = []
        for future in self._writing:
            if wait or future.done():
                future.result()  # a failed write raises here, in the caller's thread
            else:
                still_writing.append(future)
        self._writing = still_writing


def _fsync(path: Path) -> None:
    """fsync a file or a folder (a folder's entries: renames into it)."""
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


# --- unreadable parts: found, moved aside, recorded ----------------------------------------

QUARANTINE_DIR = "quarantine"  # <store>/quarantine/<path of the part relative to the store>
QUARANTINE_RECORD = "quarantine.jsonl"  # <store>/quarantine/quarantine.jsonl: one line a move
REASON_CHARS = 200  # of the reader's error, kept in messages and the record


@dataclass(frozen=True, slots=True)
class UnreadablePart:
    """A finished part that cannot be read, and why (the reader's error, one line).

    damaged: its bytes are not a Parquet file (truncated, overwritten); else the system could
    not read it (an I/O error, a permission), which may pass or be fixed in place.
    """

    path: Path
    reason: str
    damaged: bool


@dataclass(frozen=True, slots=True)
class QuarantinedPart:
    """A part moved out of the results into the quarantine folder."""

    source: Path  # where it was
    destination: Path  # where it is now
    reason: str
    size_bytes: int


def part_files(results_dir: Path) -> list[Path]:
    """Every Parquet file the `results` view reads (its glob: `**/*.parquet`), sorted."""
    if not results_dir.is_dir():
        return []
    # is_file: a FIFO or a folder named *.parquet is never opened (a FIFO would block)
    return sorted(p for p in results_dir.rglob("*.parquet") if p.is_file())


def part_problem(path: Path, *, full: bool = False) -> UnreadablePart | None:
    """None when the part is readable, else why not.

    Readable: its footer parses (magic bytes at both ends, metadata that decodes), which is
    what DuckDB reads of every part when it creates the `results` view. full: also decode
    every row group, which finds damage inside the data pages too (the whole file is read).
    """
    try:
        with pq.ParquetFile(path) as part:
            if full:
                for index in range(part.metadata.num_row_groups):
                    part.read_row_group(index)
    except (OSError, pa.ArrowException) as exc:
        # pyarrow raises OSError without errno for bytes that do not decode (a thrift footer)
        system = isinstance(exc, OSError) and exc.errno is not None
        return UnreadablePart(path, _one_line(exc), damaged=not system)
    return None


def unreadable_parts(paths: Iterable[Path], *, full: bool = False) -> list[UnreadablePart]:
    """The parts among `paths` that cannot be read (see part_problem); gone ones are skipped."""
    found = []
    for path in paths:
        problem = part_problem(path, full=full)
        if problem is not None and path.exists():
            found.append(problem)
    return found


def quarantine_parts(
    store_root: Path, parts: Iterable[UnreadablePart], *, by: str = ""
) -> list[QuarantinedPart]:
    """Move each part to <store>/quarantine/<its path in the store> and record it.

    Never deletes: a name already taken in the quarantine gets a numbered suffix. Each move
    is appended to quarantine.jsonl (when, from, to, why, size, dataset, run id, `by`) before
    the next one. The caller holds the store's writer lock. Parts already gone are skipped.
    """
    moved = []
    for part in parts:
        try:
            size = part.path.stat().st_size
        except FileNotFoundError:
            continue  # moved by someone else meanwhile
        relative = part.path.relative_to(store_root)
        destination = _free_name(store_root / QUARANTINE_DIR / relative)
        destination.parent.mkdir(parents=True, exist_ok=True)
        # a rename within the store's file system (a copy, then the removal, across two)
        shutil.move(part.path, destination)
        _fsync(destination.parent)
        done = QuarantinedPart(part.path, destination, part.reason, size)
        _record(store_root, done, by)
        moved.append(done)
    return moved


def quarantine_record(store_root: Path) -> Path:
    return store_root / QUARANTINE_DIR / QUARANTINE_RECORD


def _record(store_root: Path, moved: QuarantinedPart, by: str) -> None:
    where = _layout_names(moved.source)
    line = {
        "moved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "from": moved.source.relative_to(store_root).as_posix(),
        "to": moved.destination.relative_to(store_root).as_posix(),
        "reason": moved.reason,
        "size_bytes": moved.size_bytes,
        "dataset": where.get("dataset"),
        "run_id": where.get("run_id"),
        "by": by,
    }
    with quarantine_record(store_root).open("ab") as record:
        record.write(orjson.dumps(line) + b"\n")
        record.flush()
        os.fsync(record.fileno())


def _layout_names(part: Path) -> dict[str, str]:
    """{"dataset": ..., "run_id": ...} from a part's folders (dataset=<name>/run_id=<id>)."""
    names = {}
    for folder in part.parent.parts[-2:]:
        key, sep, value = folder.partition("=")
        if sep:
            names[key] = value
    return names


def _free_name(path: Path) -> Path:
    """`path`, or `path.1`, `path.2`... : the first name not taken."""
    candidate, n = path, 0
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."
