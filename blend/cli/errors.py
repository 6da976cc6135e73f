"""User errors of the `blend` command line: the checks a command makes before it does any work,
and the one line that `blend.cli.main` prints (exit code 1, no traceback) for each error a
user can fix. An exception not recognised here is a bug and keeps its traceback.

Each line names what is wrong, where (the path), and what to do.
"""

from __future__ import annotations

import errno
import re
import sys
from pathlib import Path

import duckdb

from blend.store.database import Store
from blend.store.store_lock import StoreError, check_writable

# A DuckDB database file starts with an 8-byte checksum, then these magic bytes.
_DUCKDB_MAGIC = b"DUCK"
_MAGIC_OFFSET = 8
# OSError numbers a user fixes (the store, or another file blend writes, cannot be written).
_WRITE_ERRNOS = {
    errno.EROFS: "read-only file system: blend writes its database and results into the "
    "store; use a store on a writable file system (--store)",
    errno.EACCES: "permission denied: give this user access to it, or use another --store",
    errno.EPERM: "operation not permitted: give this user access to it, or use another --store",
    errno.ENOSPC: "no space left on the device: free space, then run again (finished work is kept)",
    errno.EDQUOT: "disk quota exceeded: free space, then run again (finished work is kept)",
}
_DUCKDB_FILE = re.compile(r'file "(?P<path>[^"]+)"')
# What DuckDB says of a database file that is damaged, truncated or not one at all.
_DAMAGED = (
    "not a valid DuckDB database file",
    "Corrupt database file",
    "Could not read enough bytes from file",
)
# The database the command opened (writable_store): named in a message when DuckDB's own
# does not say which file it read.
_opened: list[Path] = []


class StoreDatabaseError(StoreError):
    """The store's database file is not a DuckDB database (damaged, a directory, another file)."""


def writable_store(root: Path | None) -> Store:
    """The store at `root` (created if missing), refused at once when it cannot be written or
    its database is not one: a stage would otherwise fail only after building the demo model
    or writing the demo input. Raises StoreError, or OSError when the folder cannot be made."""
    store = Store.open(root)
    _opened[:] = [store.db_path]
    check_writable(store.root, store.db_path)
    check_database(store.db_path)
    return store


def check_database(db_path: Path) -> None:
    """StoreDatabaseError unless `db_path` is missing (a new store) or a DuckDB database."""
    if db_path.is_dir():
        raise StoreDatabaseError(
            f"{db_path} is a directory, not the store's database file: move it away (blend "
            "then starts an empty store), or use another --store"
        )
    if not db_path.exists():
        return
    with db_path.open("rb") as f:
        head = f.read(_MAGIC_OFFSET + len(_DUCKDB_MAGIC))
    if head[_MAGIC_OFFSET:] != _DUCKDB_MAGIC:
        raise StoreDatabaseError(_not_a_database(str(db_path)))


def _not_a_database(path: str) -> str:
    return (
        f"{path} is not a DuckDB database (damaged, or another file in its place): move it "
        "aside (blend then starts an empty store) or restore it from a backup, or use another "
        "--store"
    )


# Errors whose message already is the line to print: (module, class). Looked up among the
# modules already imported: an error of a module never imported cannot have been raised, and
# importing blend.execute.stage only to test would take seconds (it imports the engine code).
_USER_ERRORS = (
    ("blend.store.store_lock", "StoreError"),
    ("blend.store.process_lock", "LockFileError"),
    ("blend.store.runs", "RunBusyError"),
    ("blend.store.results", "ResultWriteError"),
    ("blend.ingest.records", "IngestError"),
    ("blend.execute.stage", "ExecuteError"),
    ("blend.plan.stage", "PlanError"),
    ("blend.plan.items", "PlanNotFoundError"),
    ("blend.store.names", "InvalidNameError"),
    ("blend.store.export", "ExportError"),
)


def one_line(exc: BaseException) -> str | None:
    """The message to print for a user error, or None when `exc` is not one (a bug)."""
    for module_name, class_name in _USER_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(exc, getattr(module, class_name)):
            return str(exc)
    if isinstance(exc, duckdb.Error):
        return _duckdb_error(exc)
    if isinstance(exc, OSError):
        return _os_error(exc)
    return None


def _duckdb_error(exc: duckdb.Error) -> str | None:
    """A damaged database, or a directory in its place; None for DuckDB's other errors."""
    text = str(exc)
    where = _DUCKDB_FILE.search(text)
    path = where.group("path") if where else str(_opened[0]) if _opened else "the database"
    if any(damage in text for damage in _DAMAGED):
        return _not_a_database(path)
    if isinstance(exc, duckdb.IOException) and "Is a directory" in text:
        return f"{path} is a directory, not a database file: move it away, or use another --store"
    return None


def _os_error(exc: OSError) -> str | None:
    hint = _WRITE_ERRNOS.get(exc.errno) if exc.errno is not None else None
    if hint is None:
        return None
    where = exc.filename if exc.filename is not None else "a file blend writes"
    return f"{where}: {hint}"
