"""The store's writer lock: one blend process at a time has the database open for writing.

DuckDB allows one writing process per database file, and a second one fails at once with a
lock error. Every read-write connection of blend (`Store.connect`) therefore first takes
`<store>/.blend-writer.lock`; a second process waits for it, saying once on stderr who holds
it ("store X is being written by pid N (blend ingest ...) — waiting"). Stages open the
database, do their work and close it, and the execute stage opens it only for short reads and
record writes between engine steps, so two pipelines on one store interleave rather than one
waiting for the other to finish.

The wait is without limit unless $BLEND_STORE_WAIT_S sets one (seconds; 0: do not wait);
past it, StoreBusyError. Within one process the lock is re-entrant (nested and concurrent
connections share one DuckDB instance, which DuckDB allows).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from blend.store.process_lock import LockHolder, LockTimeoutError, acquire

WAIT_ENV = "BLEND_STORE_WAIT_S"
LOCK_NAME = ".blend-writer.lock"
DUCKDB_LOCK_WAIT_S = 10.0  # a non-blend holder of DuckDB's own lock: wait this long (s)


class StoreError(Exception):
    """The store cannot be opened for writing as asked."""


class StoreBusyError(StoreError):
    """Another process holds the store's database longer than this one would wait."""


class StoreNotWritableError(StoreError):
    """The store folder or its database is read-only (permissions, a read-only mount)."""


def wait_limit_s() -> float | None:
    """$BLEND_STORE_WAIT_S in seconds, or None (wait without limit)."""
    raw = os.environ.get(WAIT_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise StoreError(f"${WAIT_ENV} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise StoreError(f"${WAIT_ENV} must be >= 0 seconds, got {raw!r}")
    return value


def say_waiting(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Held:
    """This process's hold on one store's lock: the fd and how many users share it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.users = 1


_held: dict[Path, _Held] = {}
_held_guard = threading.Lock()  # guards _held
_take_guard = threading.Lock()  # one thread at a time takes a flock (the others join it)


@contextmanager
def writing(
    root: Path, db_path: Path, *, on_wait: Callable[[str], None] = say_waiting
) -> Iterator[None]:
    """Hold the writer lock of the store at `root` (waiting for another process's)."""
    check_writable(root, db_path)
    lock_path = root / LOCK_NAME
    held = _take(lock_path, root, on_wait)
    try:
        yield
    finally:
        with _held_guard:
            held.users -= 1
            if held.users == 0:
                del _held[lock_path]
                os.close(held.fd)  # releases the flock


def _take(lock_path: Path, root: Path, on_wait: Callable[[str], None]) -> _Held:
    def waiting(holder: LockHolder) -> None:
        on_wait(f"store {root} is being written by {holder.describe()} — waiting")

    with _take_guard:
        with _held_guard:
            held = _held.get(lock_path)
            if held is not None:
                held.users += 1
                return held
        wait_s = wait_limit_s()
        try:
            fd = acquire(lock_path, wait_s=wait_s, on_wait=waiting)
        except LockTimeoutError as exc:
            raise StoreBusyError(
                f"store {root} is busy: {exc}; try again later, or wait longer with ${WAIT_ENV}"
            ) from None
        except PermissionError as exc:
            raise StoreNotWritableError(_not_writable(root, exc)) from None
        held = _Held(fd)
        with _held_guard:
            _held[lock_path] = held
        return held


def check_writable(root: Path, db_path: Path) -> None:
    """Refuse a read-only store before anything is written (DuckDB would fail mid-stage)."""
    for path in (root, db_path):
        if path.exists() and not os.access(path, os.W_OK):
            raise StoreNotWritableError(_not_writable(path, None))


def _not_writable(path: Path, exc: OSError | None) -> str:
    why = f" ({exc.strerror})" if exc is not None and exc.strerror else ""
    return (
        f"store {path} is not writable{why}: blend writes its database and results there; "
        "give this user write access, or use another --store"
    )


def connect_for_writing(db_path: Path) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, telling a lock held outside blend (another program, a read-only
    reader) from a traceback: waits DUCKDB_LOCK_WAIT_S seconds for it, then StoreBusyError."""
    deadline = time.monotonic() + DUCKDB_LOCK_WAIT_S
    told = False
    while True:
        try:
            return duckdb.connect(str(db_path))
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" not in text.lower():
                if "permission denied" in text.lower() or "read-only" in text.lower():
                    raise StoreNotWritableError(f"{db_path}: {text}") from None
                raise
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"{db_path} is held by a process outside blend's writer lock "
                    f"(a DuckDB client or a reader left open?): {text}"
                ) from None
            if not told:
                say_waiting(f"{db_path} is locked by another program — waiting: {text}")
                told = True
            time.sleep(0.2)


@contextmanager
def reading(root: Path, *, on_wait: Callable[[str], None] = say_waiting) -> Iterator[None]:
    """A shared hold on the store's writer lock, for a read-only connection of another
    process (`blend query`): readers do not exclude each other, a writer waits for them and
    they wait for a writer (DuckDB refuses a read-only open while a process writes).

    Not for a process that also writes while it reads (flock does not upgrade: it would wait
    for itself). Waits like `writing` ($BLEND_STORE_WAIT_S).
    """
    lock_path = root / LOCK_NAME

    def waiting(holder: LockHolder) -> None:
        on_wait(f"store {root} is being written by {holder.describe()} — waiting")

    try:
        fd = acquire(lock_path, wait_s=wait_limit_s(), on_wait=waiting, shared=True)
    except FileNotFoundError:
        yield  # no blend process ever wrote this store
        return
    except LockTimeoutError as exc:
        raise StoreBusyError(
            f"store {root} is busy: being written by {exc.holder.describe()}"
        ) from None
    try:
        yield
    finally:
        os.close(fd)
