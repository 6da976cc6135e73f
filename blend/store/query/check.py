"""The first of `blend query`'s guards: DuckDB's own parse tree, searched for anything but a read.

A statement's top-level type is not enough: DuckDB types `WITH x AS (COPY ... TO ...) SELECT`
as a SELECT and `EXPLAIN ANALYZE <anything>` as an EXPLAIN, and runs the COPY in both. So each
statement is serialised by DuckDB (`json_serialize_sql`, which only takes SELECTs: every other
statement type is refused by that alone) and the whole tree is searched, at every depth
(CTEs, subqueries in FROM / WHERE / the select list, set operations, function arguments):

- query nodes must be reads (SELECT, set operation, CTE, recursive CTE); a COPY, INSERT,
  UPDATE or DELETE node anywhere refuses the statement;
- table functions must be ones that only read (`read_parquet`, `range`, `duckdb_tables`, ...);
  `query()` / `json_execute_serialized_sql()` run SQL text this check cannot see, others
  change the session (`enable_logging()`, `checkpoint()`): refused, as are the few scalar
  functions with effects (`setseed`, `nextval`, `write_log`);
- EXPLAIN is allowed for a statement that passes the same check and is run as `EXPLAIN <it>`
  (never with ANALYZE, which runs the statement).

This check gives the clear message; it is not the only guard. What runs is also confined by
blend.store.query (a thread the kernel does not let write, and locked DuckDB settings), which holds
for any form this check might miss.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb

from blend.store import sql

READ_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "CTE_NODE", "RECURSIVE_CTE_NODE"})

# Table functions that only read (DuckDB 2.0's built-ins and its json / parquet / icu ones).
# Anything not listed is refused: a new DuckDB function is not trusted until it is added here.
READ_TABLE_FUNCTIONS = frozenset(
    {
        *("range", "generate_series", "unnest", "repeat", "repeat_row", "summary"),
        *("glob", "sniff_csv", "read_csv", "read_csv_auto", "read_text", "read_blob"),
        *("read_json", "read_json_auto", "read_json_objects", "read_json_objects_auto"),
        *("read_ndjson", "read_ndjson_auto", "read_ndjson_objects", "json_each", "json_tree"),
        *("read_parquet", "parquet_scan", "parquet_metadata", "parquet_file_metadata"),
        *("parquet_full_metadata", "parquet_kv_metadata", "parquet_schema", "parquet_page_index"),
        *("parquet_bloom_probe", "read_duckdb", "histogram", "histogram_values"),
        *("pg_timezone_names", "icu_calendar_names", "test_all_types", "test_vector_types"),
        *("which_secret", "pragma_collations", "pragma_database_size", "pragma_metadata_info"),
        *("pragma_platform", "pragma_show", "pragma_storage_info", "pragma_table_info"),
        *("pragma_user_agent", "pragma_version"),
        *("duckdb_approx_database_count", "duckdb_available_metrics", "duckdb_columns"),
        *("duckdb_connection_count", "duckdb_constraints", "duckdb_coordinate_systems"),
        *("duckdb_databases", "duckdb_dependencies", "duckdb_dialects", "duckdb_extensions"),
        *("duckdb_eviction_queues", "duckdb_extension_repositories", "duckdb_external_file_cache"),
        *("duckdb_external_resource_types", "duckdb_external_resources", "duckdb_functions"),
        *("duckdb_grammar_extensions", "duckdb_indexes", "duckdb_keywords", "duckdb_memory"),
        *("duckdb_live_query_metrics", "duckdb_log_contexts", "duckdb_logs", "duckdb_logs_parsed"),
        *("duckdb_optimizers", "duckdb_prepared_statements", "duckdb_profiling_settings"),
        *("duckdb_schemas", "duckdb_secret_type_parameters", "duckdb_secret_types"),
        *("duckdb_secrets", "duckdb_sequences", "duckdb_settings", "duckdb_table_sample"),
        *("duckdb_tables", "duckdb_temporary_files", "duckdb_triggers", "duckdb_types"),
        *("duckdb_variables", "duckdb_views"),
    }
)

# Functions refused wherever they appear (as a table function or in an expression), and why.
_RUNS_SQL = "runs SQL text that this check cannot see"
_CHANGES = "changes the session or the database"
NOT_READ_FUNCTIONS = {
    "query": _RUNS_SQL,
    "query_table": _RUNS_SQL,
    "json_execute_serialized_sql": _RUNS_SQL,
    "checkpoint": _CHANGES,
    "force_checkpoint": _CHANGES,
    "enable_logging": _CHANGES,
    "disable_logging": _CHANGES,
    "truncate_duckdb_logs": _CHANGES,
    "enable_profiling": _CHANGES,
    "disable_profiling": _CHANGES,
    "add_grammar_extension": _CHANGES,
    "remove_grammar_extension": _CHANGES,
    "register_external_resource": _CHANGES,
    "register_external_resource_type": _CHANGES,
    "create_external_resource": _CHANGES,
    "deregister_external_resource": _CHANGES,
    "destroy_external_resource": _CHANGES,
    "write_log": _CHANGES,
    "setseed": _CHANGES,
    "nextval": _CHANGES,
    "setval": _CHANGES,
}

_NODE_NAMES = {
    "COPY_QUERY_NODE": "a COPY ... TO",
    "INSERT_QUERY_NODE": "an INSERT",
    "UPDATE_QUERY_NODE": "an UPDATE",
    "DELETE_QUERY_NODE": "a DELETE",
}

# `EXPLAIN` (after any comments) and what follows it; group "analyze" when it is EXPLAIN ANALYZE.
_EXPLAIN = re.compile(
    r"\A(?:\s|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*EXPLAIN\b\s*(?P<analyze>ANALY[SZ]E\b)?\s*(?P<rest>.*)\Z",
    re.IGNORECASE | re.DOTALL,
)
_parsers = threading.local()  # one parser connection per thread (connections are not shared)
_SNIPPET_CHARS = 60  # of a refused statement, quoted in the message
_ONLY_READS = (
    "blend query only reads (SELECT, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN) and cannot "
    "change the store; use the blend commands to change it"
)


class QueryRefusedError(ValueError):
    """The SQL would do more than read the store; the message names the statement and why."""


@dataclass(frozen=True, slots=True)
class CheckedQuery:
    """The one statement `blend query` will run: `text` passed the check (EXPLAIN included)."""

    text: str
    explain: bool = False


def read_statement(sql_text: str) -> CheckedQuery:
    """The one read-only statement of `sql_text`, else QueryRefusedError (or a parser error).

    Every statement is checked before any is refused for being one of several, so that
    `SELECT 1; DROP TABLE prompts` is refused for its DROP.
    """
    statements = duckdb.extract_statements(sql_text)
    if not statements:
        raise QueryRefusedError("no SQL statement given")
    checked = []
    parser = _parser()
    for index, statement in enumerate(statements, start=1):
        where = f"statement {index} of {len(statements)}" if len(statements) > 1 else "it"
        checked.append(_check(parser, statement, where))
    if len(checked) > 1:
        raise QueryRefusedError(f"{len(checked)} statements given; blend query runs one at a time")
    return checked[0]


def _parser() -> duckdb.DuckDBPyConnection:
    """This thread's in-memory DuckDB for json_serialize_sql (it runs nothing else; opening
    one costs ~20 ms, checking a statement with it ~1 ms)."""
    con: duckdb.DuckDBPyConnection | None = getattr(_parsers, "con", None)
    if con is None:
        con = _parsers.con = duckdb.connect(":memory:")
    return con


def _check(
    parser: duckdb.DuckDBPyConnection, statement: duckdb.Statement, where: str
) -> CheckedQuery:
    kind = _statement_kind(statement)
    snippet = _snippet(statement.query)
    if kind is duckdb.StatementType.EXPLAIN:
        return _check_explain(parser, statement.query, where)
    if kind is not duckdb.StatementType.SELECT:
        described = _describe(statement, kind)
        raise QueryRefusedError(f"{where} is {described}: {snippet!r}. {_ONLY_READS}")
    problem = _problem(parser, statement.query)
    if problem:
        raise QueryRefusedError(f"{where} {problem}: {snippet!r}. {_ONLY_READS}")
    return CheckedQuery(statement.query)


def _check_explain(parser: duckdb.DuckDBPyConnection, text: str, where: str) -> CheckedQuery:
    snippet = _snippet(text)
    match = _EXPLAIN.match(text)
    if match is None:
        raise QueryRefusedError(f"{where} is an EXPLAIN this check cannot read: {snippet!r}")
    if match["analyze"]:
        raise QueryRefusedError(
            f"{where} is an EXPLAIN ANALYZE, which runs the statement it explains: "
            f"{snippet!r}. Use EXPLAIN (it plans without running); {_ONLY_READS}"
        )
    explained = match["rest"]
    try:
        inner = duckdb.extract_statements(explained)
    except duckdb.Error:
        inner = []
    if len(inner) != 1 or _statement_kind(inner[0]) is not duckdb.StatementType.SELECT:
        raise QueryRefusedError(
            f"{where} explains something other than one read (or uses EXPLAIN options): "
            f"{snippet!r}. Write EXPLAIN SELECT ...; {_ONLY_READS}"
        )
    problem = _problem(parser, explained)
    if problem:
        raise QueryRefusedError(
            f"{where} explains a statement that {problem}: {snippet!r}. {_ONLY_READS}"
        )
    # Run exactly what was checked: "EXPLAIN " and the checked read, so never ANALYZE.
    return CheckedQuery("EXPLAIN " + explained, explain=True)


def _problem(parser: duckdb.DuckDBPyConnection, statement_text: str) -> str | None:
    """Why the SELECT `statement_text` is not a read (a phrase after "it"), or None."""
    row = parser.execute(sql.load("query/parse_tree"), {"statement": statement_text}).fetchone()
    tree = json.loads(row[0]) if row else {"error": True, "error_message": "no parse tree"}
    if tree.get("error"):
        return (
            "has a part this check cannot read, so it is not run "
            f"(DuckDB: {tree.get('error_message', '?')})"
        )
    for node in _dicts(tree):
        problem = _node_problem(node)
        if problem:
            return problem
    return None


def _node_problem(node: dict[str, Any]) -> str | None:
    """Why one object of the parse tree is not part of a read, or None."""
    node_type = str(node.get("type"))
    if node_type.endswith("_NODE") and node_type not in READ_NODES:
        return f"contains {_NODE_NAMES.get(node_type, node_type)} nested in the query"
    function = _function_name(node)
    if node_type == "TABLE_FUNCTION":
        function = _function_name(node.get("function") or {})
        if function not in NOT_READ_FUNCTIONS and function not in READ_TABLE_FUNCTIONS:
            return (
                f"calls the table function {function}(), which blend query does not know to "
                "only read"
            )
    if function in NOT_READ_FUNCTIONS:
        return f"calls {function}(), which {NOT_READ_FUNCTIONS[function]}"
    return None


def _dicts(tree: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in the tree, at any depth."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _function_name(node: dict[str, Any]) -> str | None:
    name = node.get("function_name")
    return name.lower() if isinstance(name, str) else None


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
