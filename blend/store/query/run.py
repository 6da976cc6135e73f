"""Read-only SQL over the store: what `blend query` runs, and what keeps it to reading.

Three guards, each of which holds when another misses a form:

1. The parse tree (blend.store.query.check): DuckDB's own serialisation of the statement, searched
   at every depth for anything but a read (a COPY inside a CTE, EXPLAIN ANALYZE, query(),
   ...), refused with a message before the database is opened.
2. The kernel: DuckDB runs in a thread of its own that Linux Landlock forbids to create,
   change or delete any file outside a private scratch folder (for DuckDB's spills, removed
   afterwards) or to open a TCP connection (landlock.py). Every thread DuckDB starts is bound
   the same way. Whatever SQL reaches DuckDB, the store cannot change and nothing is
   downloaded. Where Landlock is missing (not Linux, kernels before 5.13), this guard is
   absent and `QueryResult.confined` says so.
3. DuckDB: the database is opened read-only; without allow_files only the results folder
   may be read (`read_csv('/etc/passwd')` fails); extensions are neither installed nor
   auto-loaded; then the configuration is locked, so SET / RESET / PRAGMA cannot undo this.

Bounded: rows stream in batches and the caller takes only what it shows (nothing is
materialised), DuckDB's memory is capped (memory_limit), a timeout interrupts the query, and
so does leaving the `open_query` block early (Ctrl-C, an error): the query thread is
interrupted and waited for.
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from blend.store import sql, store_lock
from blend.store.database import Store, open_read_only, require_database, results_read_folders
from blend.store.memory import physical_memory_bytes
from blend.store.query import landlock
from blend.store.query.check import QueryRefusedError, read_statement

__all__ = [
    "QueryNotConfinedError",
    "QueryOptions",
    "QueryRefusedError",
    "QueryResult",
    "QueryTimeoutError",
    "open_query",
    "read_statement",
    "run_query",
]

BATCH_ROWS = 2048  # rows per batch handed from DuckDB to the output
MEMORY_FRACTION = 0.25  # of physical memory: DuckDB's memory_limit unless given
_QUEUE_BATCHES = 2  # batches waiting between the query thread and the output
_POLL_S = 0.1  # how often waits look at the deadline and the stop flag (s)
_STOP_WAIT_S = 5.0  # how long an interrupted query thread is waited for (s)


class QueryTimeoutError(RuntimeError):
    """The query ran longer than QueryOptions.timeout_s and was interrupted."""


class QueryNotConfinedError(RuntimeError):
    """The kernel has Landlock but refused to confine the query thread: nothing was run."""


@dataclass(frozen=True, slots=True)
class QueryOptions:
    """allow_files: let the query read files outside the store's results folder.
    timeout_s: interrupt the query after this many seconds (None: no limit).
    memory_limit: DuckDB's memory cap as DuckDB writes sizes ("2GB", "512MiB"); None:
    MEMORY_FRACTION of physical memory."""

    allow_files: bool = False
    timeout_s: float | None = None
    memory_limit: str | None = None


@dataclass(frozen=True, slots=True)
class QueryResult:
    """A running query: its columns and its rows as Arrow batches, read as they are needed.

    confined: True when the kernel keeps the query from writing files (Landlock).
    """

    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    confined: bool

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)


def default_memory_limit() -> str:
    """MEMORY_FRACTION of this machine's physical memory, in MiB (DuckDB's size syntax)."""
    try:
        total = physical_memory_bytes()
    except (AttributeError, OSError, ValueError):
        return "2GiB"  # no sysconf (Windows): a size any machine that runs blend has
    return f"{max(int(total * MEMORY_FRACTION) >> 20, 64)}MiB"


@contextmanager
def open_query(
    store: Store, sql_text: str, options: QueryOptions | None = None
) -> Iterator[QueryResult]:
    """Check `sql_text` and start it; rows stream from `result.batches` inside the block.

    Raises QueryRefusedError for anything but a read (before opening anything),
    blend.store.database.StoreNotReadableError when the database is missing or a writer holds it,
    QueryNotConfinedError, QueryTimeoutError, and duckdb.Error when the query fails (also
    while batches are read).
    Leaving the block stops the query.
    """
    checked = read_statement(sql_text)
    with _open_unchecked(store, checked.text, options or QueryOptions()) as result:
        yield result


def run_query(store: Store, sql_text: str, options: QueryOptions | None = None) -> pa.Table:
    """open_query, all rows in one table (for small results: tests, library callers)."""
    with open_query(store, sql_text, options) as result:
        return pa.Table.from_batches(list(result.batches), schema=result.schema)


@contextmanager
def _open_unchecked(store: Store, text: str, options: QueryOptions) -> Iterator[QueryResult]:
    """Run `text` under guards 2 and 3 only. Not for callers: open_query checks first; the
    tests use this to show that the other guards hold on their own."""
    require_database(store)  # before anything: a query creates nothing
    # The shared reader lock is held by the calling thread for the whole block: it must
    # outlive the query thread, which may be abandoned (daemon) if it does not stop in time.
    with (
        store_lock.reading(store.root),
        tempfile.TemporaryDirectory(prefix="blend-query-", ignore_cleanup_errors=True) as scratch,
    ):
        runner = _QueryThread(store, text, options, Path(scratch))
        try:
            yield runner.start()
        finally:
            runner.stop()


class _QueryThread:
    """The thread that confines itself, opens the database and feeds batches to a queue.

    Every DuckDB call happens in this thread (so under its Landlock domain); the calling
    thread only waits on the queue, which keeps it responsive to Ctrl-C and the deadline.
    """

    def __init__(self, store: Store, text: str, options: QueryOptions, scratch: Path) -> None:
        self._store = store
        self._text = text
        self._options = options
        self._scratch = scratch
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=_QUEUE_BATCHES)
        self._stop = threading.Event()
        self._con_guard = threading.Lock()  # guards _con between the two threads
        self._con: duckdb.DuckDBPyConnection | None = None
        timeout = options.timeout_s
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._thread = threading.Thread(target=self._work, name="blend-query", daemon=True)

    # --- the calling thread -------------------------------------------------------------

    def start(self) -> QueryResult:
        self._thread.start()
        kind, (schema, confined) = self._next()
        assert kind == "schema", kind  # the thread's first item, unless it raised
        return QueryResult(schema, self._batches(), confined)

    def stop(self) -> None:
        """Interrupt the query and wait (at most _STOP_WAIT_S) for its thread to end."""
        self._stop.set()
        give_up = time.monotonic() + _STOP_WAIT_S
        while self._thread.is_alive() and time.monotonic() < give_up:
            self._interrupt()  # again each round: the query may only just have started
            self._drain()
            self._thread.join(_POLL_S)

    def _batches(self) -> Iterator[pa.RecordBatch]:
        while True:
            kind, batch = self._next()
            if kind == "end":
                return
            yield batch

    def _next(self) -> tuple[str, Any]:
        """The next item the thread sends (raising what it raised), watching the deadline."""
        while True:
            wait = _POLL_S
            if self._deadline is not None:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    self._interrupt()
                    raise QueryTimeoutError(
                        f"the query ran longer than its {self._options.timeout_s:g} s limit "
                        "and was stopped"
                    )
                wait = min(wait, left)
            try:
                kind, payload = self._queue.get(timeout=wait)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the query thread ended without a result") from None
                continue
            if kind == "error":
                raise payload
            return kind, payload

    def _interrupt(self) -> None:
        with self._con_guard:
            if self._con is not None:
                self._con.interrupt()

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    # --- the query thread ---------------------------------------------------------------

    def _work(self) -> None:
        try:
            confined = _confine(self._scratch)
            with open_read_only(self._store, _startup_config(self._options, self._scratch)) as con:
                _lock_down(con, self._store, self._options)
                with self._con_guard:
                    self._con = con
                try:
                    self._stream(con, confined)
                finally:
                    with self._con_guard:
                        self._con = None
        except BaseException as exc:  # handed to the calling thread, which raises it
            self._put(("error", exc))

    def _stream(self, con: duckdb.DuckDBPyConnection, confined: bool) -> None:
        if self._stop.is_set():
            return
        relation = con.sql(self._text)
        if relation is None:  # a statement without rows (only _open_unchecked runs those)
            self._put(("schema", (pa.schema([]), confined)))
            self._put(("end", None))
            return
        reader = relation.to_arrow_reader(BATCH_ROWS)
        if not self._put(("schema", (reader.schema, confined))):
            return
        for batch in reader:
            if not self._put(("batch", batch)):
                return
        self._put(("end", None))

    def _put(self, item: tuple[str, Any]) -> bool:
        """Hand `item` over, waiting for room; False once the caller has stopped listening."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False


def _confine(scratch: Path) -> bool:
    """Landlock this thread (writes only under `scratch`) where the kernel has it."""
    if landlock.abi_version() < 1:
        return False
    try:
        landlock.deny_writes_in_this_thread([scratch])
    except landlock.LandlockError as exc:
        # Where Landlock exists, a failure is a misconfiguration to see, not to run past.
        raise QueryNotConfinedError(
            f"could not confine the query (Landlock ABI {landlock.abi_version()}): {exc}"
        ) from None
    return True


def _startup_config(options: QueryOptions, scratch: Path) -> dict[str, Any]:
    """DuckDB settings fixed when the database opens."""
    return {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "memory_limit": options.memory_limit or default_memory_limit(),
        "temp_directory": str(scratch),  # spills: never next to the store's database
    }


def _lock_down(con: duckdb.DuckDBPyConnection, store: Store, options: QueryOptions) -> None:
    """Limit reads to the results folder (unless allow_files), then lock every setting."""
    if not options.allow_files:
        # Folder prefixes (a trailing separator: `results-other/` stays out), the escaped
        # pattern of the folder too: DuckDB checks the pattern before it globs.
        folders = results_read_folders(store.results_dir)
        con.execute(sql.load("query/allow_directories"), {"folders": folders})
        con.execute(sql.load("query/no_external_access"))
    con.execute(sql.load("query/lock_session"))
