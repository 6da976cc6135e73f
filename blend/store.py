"""The blend store: one folder holding the DuckDB database and the Parquet results.

    <store>/blend.duckdb                                   tables of sql/schema
    <store>/results/dataset=<name>/run_id=<id>/part-*.parquet
    <store>/models/                                         locally created models (demo)
    <store>/tmp/                                            scratch files of a running stage

DuckDB allows one writing process per database file, so every stage opens the database,
does its work and closes it; nothing holds a connection across stages.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from blend import sql, store_lock

DEFAULT_STORE = "blend-store"
STORE_ENV = "BLEND_STORE"


def default_store_dir() -> Path:
    """$BLEND_STORE if set, else ./blend-store (read at call time, not import time)."""
    return Path(os.environ.get(STORE_ENV, DEFAULT_STORE))


@dataclass(frozen=True, slots=True)
class Store:
    """A store folder; `connect()` opens its database with the schema in place."""

    root: Path

    @classmethod
    def open(cls, root: str | Path | None = None) -> Store:
        path = Path(root) if root is not None else default_store_dir()
        path.mkdir(parents=True, exist_ok=True)
        return cls(path.resolve())

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
                    refresh_results_view(con, self.results_dir)
                yield con
            finally:
                con.close()


def results_glob(results_dir: Path) -> str:
    return str(results_dir / "**" / "*.parquet")


def refresh_results_view(
    con: duckdb.DuckDBPyConnection, results_dir: Path, *, temporary: bool = False
) -> None:
    """(Re)create the `results` view over every finished Parquet part of every run.

    Temporary files (`.tmp-*`) are never matched: parts are renamed into place when complete.
    Without any part yet, the view is an empty relation with the result columns. Also
    (re)creates `result_files` (the part holding each row) and the user views of sql/views/.
    temporary: create them as TEMP views (of this connection only), for read-only connections.
    """
    view = _temporary if temporary else _as_is
    has_parts = results_dir.is_dir() and any(results_dir.rglob("part-*.parquet"))
    if has_parts:
        glob = _quote(results_glob(results_dir))
        con.execute(view(sql.load("results/create_view").replace("$glob", glob)))
        con.execute(view(sql.load("results/create_files_view").replace("$glob", glob)))
    else:
        con.execute(view(sql.load("results/create_empty_view")))
        con.execute(view(sql.load("results/create_empty_files_view")))
    for name in USER_VIEWS:
        con.execute(view(sql.load(f"views/{name}")))


# Views over `results` and the tables, for users (sql/views/<name>.sql).
USER_VIEWS = ("latest_results", "run_summary", "row_lineage", "estimate_accuracy")


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
def connect_read_only(store: Store) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the store's database read-only, with `results` and the user views as TEMP views.

    Nothing this connection runs can change the database file (DuckDB refuses every write).
    DuckDB lets many read-only processes share the file but not with a writer: while a blend
    stage writes, this waits for it (see store_lock.reading); while another program writes,
    opening fails, and the StoreNotReadableError says so instead of DuckDB's lock error.
    """
    require_database(store)
    # A shared hold on blend's writer lock: a stage that writes waits for the query to end, and
    # the query waits (saying so) for a stage's short write to end, instead of failing on
    # DuckDB's file lock.
    with store_lock.reading(store.root), open_read_only(store) as con:
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
    store: Store, config: Mapping[str, Any] | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """connect_read_only without blend's reader lock, for a caller that holds it
    (store_lock.reading) in another thread; `config`: DuckDB settings at start-up."""
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
            refresh_results_view(con, store.results_dir, temporary=True)
        except duckdb.CatalogException as exc:
            raise StoreNotReadableError(
                f"{store.db_path} lacks tables the views need (made by an older blend?); "
                f"run any stage (e.g. blend profile) once to bring it up to date: {exc}"
            ) from None
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
