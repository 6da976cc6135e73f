"""Read-only SQL over the store: what `blend query` runs.

Three layers keep a query from changing anything or reading what it should not:

1. DuckDB's own parser splits the text into statements; only reads (SELECT, which includes
   FROM / VALUES / DESCRIBE / SHOW / SUMMARIZE, and EXPLAIN) are run. Anything else - DDL, DML,
   COPY, ATTACH / DETACH, INSTALL / LOAD, EXPORT, SET / PRAGMA / CALL, transactions - is refused
   before the database is opened, with the statement's type in the message.
2. The database is opened read-only (blend.store.connect_read_only): DuckDB itself refuses
   any write that got past 1.
3. Without allow_files, DuckDB may touch only the store's results folder (the Parquet the
   `results` view reads) and the database file: `read_csv('/etc/passwd')`, `glob(...)` and the
   like fail with a permission error. The configuration is then locked, so a query cannot
   turn any of it back on.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from blend.store import Store, connect_read_only, results_read_folders

# Statement types that only read. SELECT covers FROM-first queries, VALUES, DESCRIBE, SHOW and
# SUMMARIZE; EXPLAIN ANALYZE of a read runs the read. PIVOT is a MULTI statement (it may create
# a type first) and is refused: `SELECT * FROM (PIVOT ...)` is the read-only form.
READ_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})

_SNIPPET_CHARS = 60  # of a refused statement, quoted in the message


class QueryRefusedError(ValueError):
    """The SQL would do more than read the store; the message names the statement and why."""


@dataclass(frozen=True, slots=True)
class QueryOptions:
    """allow_files: let the query read files outside the store's results folder."""

    allow_files: bool = False


def read_statement(sql_text: str) -> duckdb.Statement:
    """The one read-only statement of `sql_text`, else QueryRefusedError (or a parser error).

    Every statement is checked before any is refused for being one of several, so that
    `SELECT 1; DROP TABLE prompts` is refused for its DROP.
    """
    statements = duckdb.extract_statements(sql_text)
    if not statements:
        raise QueryRefusedError("no SQL statement given")
    for index, statement in enumerate(statements, start=1):
        kind = _statement_kind(statement)
        if kind is None or kind not in READ_STATEMENTS:
            where = f"statement {index} of {len(statements)}" if len(statements) > 1 else "it"
            raise QueryRefusedError(
                f"{where} is {_describe(statement, kind)}: {_snippet(statement.query)!r}. "
                "blend query only reads (SELECT, FROM, "
                "DESCRIBE, SHOW, SUMMARIZE, EXPLAIN) and cannot change the store; use the blend "
                "commands to change it"
            )
    if len(statements) > 1:
        raise QueryRefusedError(
            f"{len(statements)} statements given; blend query runs one at a time"
        )
    return statements[0]


def run_query(store: Store, sql_text: str, options: QueryOptions | None = None) -> pa.Table:
    """Run one read-only statement against the store's tables and views; the whole result.

    Raises QueryRefusedError for anything but a read, blend.store.StoreNotReadableError when
    the database is missing or a writer holds it, and duckdb.Error when the query fails.
    """
    options = options or QueryOptions()
    statement = read_statement(sql_text)  # before opening: a refused query touches nothing
    with connect_read_only(store) as con:
        _sandbox(con, store, options)
        return con.sql(statement).to_arrow_table()


def _sandbox(con: duckdb.DuckDBPyConnection, store: Store, options: QueryOptions) -> None:
    """Limit file access to the results folder (unless allow_files), then lock the settings."""
    if not options.allow_files:
        # The trailing separator makes it a folder prefix: `results-other/` stays out.
        folders = results_read_folders(store.results_dir)
        con.execute("SET allowed_directories = $folders", {"folders": folders})
        con.execute("SET enable_external_access = false")
    # Even with --allow-files, a query never downloads an extension into ~/.duckdb.
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET lock_configuration = true")


def _statement_kind(statement: duckdb.Statement) -> duckdb.StatementType | None:
    # duckdb's Python enum lags its parser: a newer statement type raises ValueError here.
    try:
        return statement.type
    except ValueError:
        return None


def _describe(statement: duckdb.Statement, kind: duckdb.StatementType | None) -> str:
    keyword = (statement.query.split() or ["?"])[0].upper()
    if kind is None:
        return f"a {keyword} statement (a kind blend query does not run)"
    # INSTALL has LOAD's type, CHECKPOINT is a CALL, USE and RESET are SETs: name both.
    name = kind.name
    described = name if keyword == name else f"{keyword} statement (type {name})"
    if keyword == name:
        described += " statement"
    return ("an " if described[0] in "AEIOU" else "a ") + described


def _snippet(query: str) -> str:
    text = " ".join(query.split())
    return text if len(text) <= _SNIPPET_CHARS else text[: _SNIPPET_CHARS - 3] + "..."
