"""The blend store: one folder holding the DuckDB database and the Parquet results.

    <store>/blend.duckdb                                   tables of sql/schema
    <store>/results/dataset=<name>/run_id=<id>/part-*.parquet
    <store>/models/                                         locally created models (demo)
    <store>/tmp/                                            scratch files of a running stage
    <store>/quarantine/                                     unreadable parts moved aside

DuckDB allows one writing process per database file, so every stage opens the database,
does its work and closes it; nothing holds a connection across stages.

The store's path goes into DuckDB file patterns (the `results` view's glob), so its glob
characters are escaped (`glob_escape`); a path with a backslash (a folder separator to
DuckDB's glob) or a `?` (DuckDB cuts the database's path there to name its write-ahead log)
is refused. A part DuckDB cannot read when it makes the views is moved to the quarantine by
a writing connection (saying so), and left out by a read-only one.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from blend.store import sql, store_lock
from blend.store.process_lock import this_process
from blend.store.results import (
    QUARANTINE_DIR,
    QuarantinedPart,
    UnreadablePart,
    part_files,
    quarantine_parts,
    quarantine_record,
    unreadable_parts,
)
from blend.store.store_lock import StoreError

DEFAULT_STORE = "blend-store"
STORE_ENV = "BLEND_STORE"


class StorePathError(StoreError):
    """The store's path has a character DuckDB cannot work with (a backslash, a `?`)."""


class UnreadablePartError(StoreError):
    """A result part cannot be read for a reason that may pass (an I/O error, a permission):
    it is not moved to the quarantine unless asked (`blend verify --repair`)."""


def say(message: str) -> None:
    """Tell the user (stderr: a query's stdout stays machine-readable)."""
    print(f"blend: {message}", file=sys.stderr, flush=True)


def default_store_dir() -> Path:
    """$BLEND_STORE if set, else ./blend-store (read at call time, not import time)."""
    return Path(os.environ.get(STORE_ENV, DEFAULT_STORE))


@dataclass(frozen=True, slots=True)
class Store:
    """A store folder; `connect()` opens its database with the schema in place."""

    root: Path

    @classmethod
    def open(cls, root: str | Path | None = None) -> Store:
        path = (Path(root) if root is not None else default_store_dir()).resolve()
        check_store_path(path)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @property
    def db_path(self) -> Path:
        return self.root / "blend.duckdb"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def tmp_dir(self) -> Path:
        """Scratch files of the stages (removed when done; a killed stage's by the next)."""
        return self.root / "tmp"

    @property
    def quarantine_dir(self) -> Path:
        """Unreadable result parts moved aside, and quarantine.jsonl (blend/store/results.py)."""
        return self.root / QUARANTINE_DIR

    @contextmanager
    def connect(self, *, views: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the database (creating tables if needed) and the `results` and user views.

        views=False skips (re)creating the views: for internal work that reads tables only
        (creating them reads every Parquet footer of the store).
        """
        with store_lock.writing(self.root, self.db_path):  # one writing process per store
            con = store_lock.connect_for_writing(self.db_path)
            try:
                for statement in sql.schema_statements():
                    con.execute(statement)
                if views:
                    self._refresh_views(con)
                yield con
            finally:
                con.close()

    def _refresh_views(self, con: duckdb.DuckDBPyConnection) -> None:
        """The views; when DuckDB cannot make them, unreadable parts are moved to the
        quarantine and the views made again (no part is checked while DuckDB can read all:
        making the views reads every footer already)."""
        try:
            refresh_results_view(con, self.results_dir, macros=True)
        except duckdb.Error:
            if not quarantine_unreadable(self, part_files(self.results_dir)):
                raise  # not a part's fault
            refresh_results_view(con, self.results_dir, macros=True)


# characters of a store path DuckDB cannot work with: (how to name it, what DuckDB does)
UNUSABLE_IN_STORE_PATH = {
    "\\": (
        "a backslash",
        "DuckDB's file patterns read it as a folder separator (the results view would read "
        "another folder's results)",
    ),
    "?": (
        "a '?'",
        "DuckDB cuts the database's path at it to name its write-ahead log (writes fail)",
    ),
}


def check_store_path(root: Path) -> None:
    """Refuse a store path DuckDB cannot use (StorePathError); glob characters are escaped
    instead (glob_escape)."""
    for char, (name, why) in UNUSABLE_IN_STORE_PATH.items():
        if char in str(root):
            raise StorePathError(
                f"store path {root} contains {name}: {why}; use a store path without it"
            )


def glob_escape(path: str) -> str:
    """`path` as a DuckDB file pattern that matches only itself: `*`, `?` and `[` are put in
    brackets (`[*]`), which DuckDB's glob reads as the character itself. DuckDB globs every
    path that contains one of them, also a plain file name in a list."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in path)


def results_glob(results_dir: Path) -> str:
    """The pattern of every part of the store (whatever the store's path contains)."""
    check_store_path(results_dir)
    return glob_escape(str(results_dir)) + "/**/*.parquet"


def run_parts_glob(run_directory: Path) -> str:
    """The pattern of a run folder's finished parts (not the `.tmp-*` being written)."""
    check_store_path(run_directory)
    return glob_escape(str(run_directory)) + "/part-*.parquet"


def results_read_folders(results_dir: Path) -> list[str]:
    """The folder prefixes a sandboxed DuckDB must be allowed to read the results through:
    the folder and, when they differ, its escaped pattern (DuckDB checks the pattern before
    it globs, then each file found)."""
    folders = [str(results_dir) + os.sep, glob_escape(str(results_dir)) + os.sep]
    return list(dict.fromkeys(folders))


def quarantine_unreadable(
    store: Store, parts: Iterable[Path], *, tell: Callable[[str], None] = say
) -> list[QuarantinedPart]:
    """Move the damaged parts among `parts` to the quarantine, saying so; returns what moved.

    Holds the store's writer lock while moving (re-entrant: callers may hold it). A part the
    system could not read (I/O error, permission) is not moved: UnreadablePartError.
    """
    bad = unreadable_parts(parts)
    if not bad:
        return []
    held = [p for p in bad if not p.damaged]
    if held:
        raise UnreadablePartError(_not_moved(store, held))
    with store_lock.writing(store.root, store.db_path):
        moved = quarantine_parts(store.root, bad, by=this_process().strip())
    for part in moved:
        tell(_moved_message(store, part))
    return moved


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What `verify_results` checked, found and moved."""

    n_parts: int  # Parquet files checked (every one the `results` view reads)
    n_bytes: int  # their size
    seconds: float  # wall time of the check (s)
    full: bool  # every row group decoded (else footers only)
    unreadable: list[UnreadablePart]  # found (moved ones included)
    moved: list[QuarantinedPart]  # with repair: what went to the quarantine
    n_quarantined_before: int  # moves recorded in quarantine.jsonl before this one


def verify_results(store: Store, *, full: bool = False, repair: bool = False) -> VerifyReport:
    """Check every result part (footer; full: every row group); with repair, move the
    unreadable ones, I/O errors included, to the quarantine under the writer lock.

    The check itself takes no lock (finished parts never change); each part found is checked
    again under the lock before it moves.
    """
    started = time.perf_counter()
    before = _record_lines(store)
    paths = part_files(store.results_dir)
    n_bytes = sum(_size(p) for p in paths)
    bad = unreadable_parts(paths, full=full)
    moved: list[QuarantinedPart] = []
    if repair and bad:
        with store_lock.writing(store.root, store.db_path):
            still = unreadable_parts([p.path for p in bad], full=full)
            moved = quarantine_parts(store.root, still, by=this_process().strip())
    seconds = time.perf_counter() - started
    return VerifyReport(len(paths), n_bytes, seconds, full, bad, moved, before)


def _record_lines(store: Store) -> int:
    try:
        with quarantine_record(store.root).open("rb") as record:
            return sum(1 for line in record if line.strip())
    except FileNotFoundError:
        return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _moved_message(store: Store, part: QuarantinedPart) -> str:
    return (
        f"result part {part.source} cannot be read ({part.reason}): moved it to "
        f"{part.destination}, recorded in {quarantine_record(store.root).name} there; its "
        "requests have no result now, so an incremental plan (`blend run`, `blend plan`) "
        "runs them again"
    )


def _not_moved(store: Store, held: list[UnreadablePart]) -> str:
    more = f" (and {len(held) - 1} more)" if len(held) > 1 else ""
    return (
        f"result part {held[0].path} cannot be read ({held[0].reason}){more}: fix it, or move "
        f"it aside with `blend verify --repair --store {store.root}`"
    )


def left_out_message(parts: list[UnreadablePart]) -> str:
    """What a read-only connection says when it leaves unreadable parts out of `results`."""
    more = f" and {len(parts) - 1} more" if len(parts) > 1 else ""
    return (
        f"left unreadable result part {parts[0].path} ({parts[0].reason}){more} out of "
        "`results`; `blend verify --repair` moves it to the quarantine, then the next "
        "`blend run` runs its requests again"
    )


def refresh_results_view(
    con: duckdb.DuckDBPyConnection,
    results_dir: Path,
    *,
    temporary: bool = False,
    left_out: Collection[Path] = (),
    macros: bool = False,
) -> None:
    """(Re)create the `results` view over every finished Parquet part of every run.

    Temporary files (`.tmp-*`) are never matched: parts are renamed into place when complete.
    Without any part yet, the view is an empty relation with the result columns. Also
    (re)creates `result_files` (the part holding each row) and the user views of sql/views/;
    with `macros`, the stages' shared table macros of sql/macros/ (TEMP: this connection's;
    not for `blend query`: binding them reads every part's footer again, and its session
    starts as fast as it can so that Ctrl-C finds the query running).
    temporary: create them as TEMP views (of this connection only), for read-only connections.
    left_out: parts to leave out (unreadable ones); the views then read a list of the others,
    fixed when made, instead of the glob that also sees parts written later.
    """
    view = _temporary if temporary else _as_is
    if left_out:
        files = [p for p in part_files(results_dir) if p not in left_out]
        source = "[" + ", ".join(_quote(glob_escape(str(p))) for p in files) + "]"
        has_parts = bool(files)
    else:
        source = _quote(results_glob(results_dir))
        has_parts = results_dir.is_dir() and any(results_dir.rglob("part-*.parquet"))
    if has_parts:
        con.execute(view(sql.load("results/create_view").replace("$glob", source)))
        con.execute(view(sql.load("results/create_files_view").replace("$glob", source)))
    else:
        con.execute(view(sql.load("results/create_empty_view")))
        con.execute(view(sql.load("results/create_empty_files_view")))
    for name in USER_VIEWS:
        con.execute(view(sql.load(f"views/{name}")))
    # after `results`: DuckDB binds a macro's tables when it is made
    for name in sql.SHARED_MACROS if macros else ():
        con.execute(sql.load(f"macros/{name}"))


# Views over `results` and the tables, for users (sql/views/<name>.sql).
USER_VIEWS = (
    "latest_result_picks",
    "latest_results",
    "run_summary",
    "row_lineage",
    "estimate_accuracy",
)


def _quote(text: str) -> str:
    # DDL cannot take bound parameters; the glob is our own path, quoted as a SQL literal.
    return "'" + text.replace("'", "''") + "'"


def fetch_arrow(con: duckdb.DuckDBPyConnection, query: str, params: Any = None) -> pa.Table:
    """Run a query and return its whole result as an Arrow table."""
    return con.sql(query, params=params).to_arrow_table()


def fetch_dicts(
    con: duckdb.DuckDBPyConnection, query: str, params: Any = None
) -> list[dict[str, Any]]:
    """Run a query and return its rows as dicts (small results only)."""
    return fetch_arrow(con, query, params).to_pylist()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Commit what the block wrote, or roll all of it back if the block raises."""
    con.begin()
    try:
        yield
    except BaseException:
        con.rollback()
        raise
    con.commit()


class StoreNotReadableError(RuntimeError):
    """The store's database cannot be opened for reading (missing, or a writer holds it)."""


@contextmanager
def connect_read_only(
    store: Store, *, tell: Callable[[str], None] = say
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the store's database read-only, with `results` and the user views as TEMP views.

    Nothing this connection runs can change the database file (DuckDB refuses every write).
    DuckDB lets many read-only processes share the file but not with a writer: while a blend
    stage writes, this waits for it (see store_lock.reading); while another program writes,
    opening fails, and the StoreNotReadableError says so instead of DuckDB's lock error.
    Unreadable parts are left out of `results` (nothing is moved), saying so through `tell`.
    """
    require_database(store)
    # A shared hold on blend's writer lock: a stage that writes waits for the query to end, and
    # the query waits (saying so) for a stage's short write to end, instead of failing on
    # DuckDB's file lock.
    with store_lock.reading(store.root), open_read_only(store, tell=tell, macros=True) as con:
        yield con


def require_database(store: Store) -> None:
    """StoreNotReadableError unless the store has a database (a query never creates one)."""
    if not store.db_path.is_file():
        raise StoreNotReadableError(
            f"no database at {store.db_path}: nothing was ingested into this store yet "
            "(blend ingest FILE --dataset NAME), or --store / $BLEND_STORE names another folder"
        )


@contextmanager
def open_read_only(
    store: Store,
    config: Mapping[str, Any] | None = None,
    *,
    tell: Callable[[str], None] = say,
    macros: bool = False,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """connect_read_only without blend's reader lock, for a caller that holds it
    (store_lock.reading) in another thread; `config`: DuckDB settings at start-up;
    unreadable parts are left out of `results`, saying so through `tell`; `macros`: the
    stages' shared table macros too (refresh_results_view)."""
    try:
        con = duckdb.connect(str(store.db_path), read_only=True, config=dict(config or {}))
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        raise StoreNotReadableError(
            f"{store.db_path} is open for writing by another blend process (a stage is "
            "running); DuckDB lets readers in only while nothing writes, so query again when "
            f"it has finished. DuckDB said: {str(exc).splitlines()[0]}"
        ) from None
    try:
        try:
            refresh_results_view(con, store.results_dir, temporary=True, macros=macros)
        except duckdb.CatalogException as exc:
            raise StoreNotReadableError(
                f"{store.db_path} lacks tables the views need (made by an older blend?); "
                f"run any stage (e.g. blend profile) once to bring it up to date: {exc}"
            ) from None
        except duckdb.Error:
            bad = unreadable_parts(part_files(store.results_dir))
            if not bad:
                raise  # not a part's fault
            tell(left_out_message(bad))
            left_out = {p.path for p in bad}
            refresh_results_view(
                con, store.results_dir, temporary=True, left_out=left_out, macros=macros
            )
        yield con
    finally:
        con.close()


def _as_is(statement: str) -> str:
    return statement


def _temporary(statement: str) -> str:
    """A `CREATE OR REPLACE VIEW` statement of sql/ as a TEMP view (of this connection only)."""
    # Our own statement text (sql/results, sql/views), never user input; a read-only
    # connection can create temporary views only.
    create = "CREATE OR REPLACE VIEW"
    if create not in statement:
        raise ValueError(f"expected a {create} statement, got: {statement[:80]!r}")
    return statement.replace(create, "CREATE OR REPLACE TEMP VIEW", 1)
