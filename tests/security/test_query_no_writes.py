"""`blend query` cannot write a file or change a setting, whatever the SQL (issue 16, item 1).

Write forms are generated, not listed: every writing statement kind nested every way DuckDB
allows (CTE, subquery in FROM / WHERE / the select list, set operation, EXPLAIN, EXPLAIN
ANALYZE, PREPARE + EXECUTE, table and scalar macros, query() and
json_execute_serialized_sql()). Guard 1 (the parse-tree check) must refuse each; then the
check is skipped and guards 2 and 3 (the thread's Landlock domain, DuckDB's read-only locked
session) must hold on their own: the store's files byte-identical, nothing outside, no
setting changed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import typer
from typer.testing import CliRunner

from blend.cli import app
from blend.cli.query import query_command
from blend.store.database import Store
from blend.store.query import QueryOptions, landlock, run_query
from blend.store.query.check import QueryRefusedError, read_statement
from blend.store.query.run import _open_unchecked
from tests.support.attacks import tree_digest
from tests.support.cli_text import flat

runner = CliRunner()
needs_landlock = pytest.mark.skipif(
    landlock.abi_version() < 1, reason="Landlock (Linux 5.13+) confines the query thread"
)


@dataclass(frozen=True)
class Places:
    """Where the forms aim: the store's results, its one part, a folder outside."""

    results: Path
    run: Path
    part: Path
    outside: Path


@pytest.fixture
def places(filled_store: Store, tmp_path: Path) -> Places:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "in.csv").write_text("a\n1\n")
    run = next(filled_store.results_dir.glob("dataset=*/run_id=*"))
    return Places(filled_store.results_dir, run, next(run.glob("part-*.parquet")), outside)


# Writing statements, by kind; {results} {run} {part} {outside} are filled from Places.
WRITES = {
    "copy-to-outside": "COPY (SELECT 1 AS a) TO '{outside}/stolen.csv'",
    "copy-partitioned-overwrite": (
        "COPY (SELECT 1 AS k, 2 AS v) TO '{results}/dataset=d' "
        "(FORMAT parquet, PARTITION_BY (k), OVERWRITE)"
    ),
    "copy-forge-part": (
        "COPY (SELECT * REPLACE ('FORGED' AS output_text) FROM read_parquet('{part}')) "
        "TO '{part}' (FORMAT parquet, USE_TMP_FILE false)"
    ),
    "copy-duplicate-part": "COPY (SELECT * FROM results) TO '{run}/part-00009-x.parquet'",
    "copy-csv-into-results": "COPY (SELECT 'junk' AS a) TO '{results}/x.parquet' (FORMAT csv)",
    "copy-from": "COPY prompts FROM '{outside}/in.csv'",
    "export": "EXPORT DATABASE '{outside}/dump'",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "attach-new": "ATTACH '{outside}/new.duckdb' AS other",
    "attach-results": "ATTACH '{results}/new.duckdb' AS other",
    "set": "SET enable_external_access = true",
    "set-memory": "SET memory_limit = '1TB'",
    "reset": "RESET lock_configuration",
    "pragma": "PRAGMA enable_profiling",
    "call": "CALL enable_logging()",
    "checkpoint": "CHECKPOINT",
    "create-table": "CREATE TABLE evil AS SELECT 1 AS a",
    "create-secret": "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "insert": "INSERT INTO datasets SELECT * FROM datasets RETURNING *",
    "update": "UPDATE prompts SET prompt = 'x' RETURNING *",
    "delete": "DELETE FROM prompts RETURNING *",
    "drop": "DROP TABLE prompts",
    "vacuum": "VACUUM",
}

# Ways to nest a statement S inside something DuckDB types as a read (or runs anyway).
NESTINGS: dict[str, Callable[[str], str]] = {
    "plain": lambda s: s,
    "cte": lambda s: f"WITH x AS ({s}) SELECT 'looks harmless'",
    "cte-used": lambda s: f"WITH x AS ({s}) SELECT * FROM x",
    "from-subquery": lambda s: f"SELECT * FROM ({s})",
    "from-subquery-cte": lambda s: f"SELECT * FROM (WITH x AS ({s}) SELECT 1 AS one)",
    "where-subquery": lambda s: f"SELECT 1 WHERE EXISTS (WITH x AS ({s}) SELECT 1)",
    "select-list-subquery": lambda s: f"SELECT (WITH x AS ({s}) SELECT 1) AS one",
    "union": lambda s: f"SELECT 1 AS one UNION ALL (WITH x AS ({s}) SELECT 2)",
    "explain": lambda s: f"EXPLAIN {s}",
    "explain-cte": lambda s: f"EXPLAIN WITH x AS ({s}) SELECT 1",
    "explain-analyze": lambda s: f"EXPLAIN ANALYZE {s}",
    "explain-analyze-cte": lambda s: f"EXPLAIN ANALYZE WITH x AS ({s}) SELECT 1",
    "prepare-execute": lambda s: f"PREPARE p AS {s}; EXECUTE p",
    "table-macro": lambda s: (
        f"CREATE TEMP MACRO m() AS TABLE WITH x AS ({s}) SELECT 1 AS one; SELECT * FROM m()"
    ),
    "scalar-macro": lambda s: (
        f"CREATE TEMP MACRO f() AS (SELECT count(*) FROM (WITH x AS ({s}) SELECT 1)); SELECT f()"
    ),
    "query-function": lambda s: "SELECT * FROM query({})".format(
        _literal(f"WITH x AS ({s}) SELECT 1")
    ),
    "serialized": lambda s: "SELECT * FROM json_execute_serialized_sql({})".format(
        _literal(_serialized(f"WITH x AS ({s}) SELECT 1"))
    ),
}
# The nestings that are SQL inside SQL: applied twice for the deeper forms.
SQL_NESTINGS = ["cte", "from-subquery-cte", "where-subquery", "select-list-subquery", "union"]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _serialized(text: str) -> str:
    """DuckDB's own JSON of `text` (as json_execute_serialized_sql takes it)."""
    with duckdb.connect() as con:
        row = con.execute("SELECT json_serialize_sql($t)", {"t": text}).fetchone()
    return row[0] if row else ""


def forms(places: Places, depth: int = 1) -> list[tuple[str, str]]:
    """(id, SQL) of every write kind under every nesting (depth 2: two SQL nestings)."""
    fill = {k: str(v) for k, v in vars(places).items()}
    if depth == 1:
        nests = [(name, NESTINGS[name]) for name in NESTINGS]
    else:
        nests = [
            (f"{a}/{b}", _compose(NESTINGS[a], NESTINGS[b]))
            for a, b in itertools.product(SQL_NESTINGS, repeat=2)
        ]
    return [
        (f"{kind}:{nest}", wrap(statement.format(**fill)))
        for (kind, statement), (nest, wrap) in itertools.product(WRITES.items(), nests)
    ]


def _compose(outer: Callable[[str], str], inner: Callable[[str], str]) -> Callable[[str], str]:
    return lambda s: outer(inner(s))


def refused(sql_text: str) -> bool:
    """Guard 1 refuses the text, or DuckDB cannot parse it (then nothing runs either)."""
    try:
        read_statement(sql_text)
    except (QueryRefusedError, duckdb.ParserException):
        return True
    return False


def parses(sql_text: str) -> bool:
    try:
        duckdb.extract_statements(sql_text)
    except duckdb.Error:
        return False
    return True


# --- the issue's probes -------------------------------------------------------------------

PROBES = {
    "cte-copy-partition-overwrite-empties-results": (
        "WITH x AS (COPY (SELECT 1 AS k, 2 AS v) TO '{results}/dataset=d' "
        "(FORMAT parquet, PARTITION_BY (k), OVERWRITE)) SELECT 'looks harmless'"
    ),
    "explain-analyze-copy-forges-a-part": (
        "EXPLAIN ANALYZE COPY (SELECT * REPLACE ('FORGED' AS output_text) "
        "FROM read_parquet('{part}')) TO '{run}/part-00005-forged.parquet'"
    ),
    "explain-analyze-copy-duplicates-results": (
        "EXPLAIN ANALYZE COPY (SELECT * FROM results) TO '{run}/part-00009-x.parquet'"
    ),
    "cte-copy-csv-breaks-the-store": (
        "WITH x AS (COPY (SELECT 'junk' AS a) TO '{results}/x.parquet' (FORMAT csv)) SELECT 'ok'"
    ),
    "cte-copy-outside": "WITH x AS (COPY (SELECT 1 AS a) TO '{outside}/x.csv') SELECT 'ok'",
    "explain-analyze-install": "EXPLAIN ANALYZE INSTALL httpfs",
}


def result_count(store: Store) -> int:
    return run_query(store, "SELECT count(*) AS n FROM results").to_pylist()[0]["n"]


@pytest.mark.parametrize("allow_files", [False, True], ids=["default", "allow-files"])
@pytest.mark.parametrize("probe", PROBES)
def test_the_issue_probes_are_refused_and_change_nothing(
    filled_store: Store,
    places: Places,
    probe: str,
    allow_files: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"  # where DuckDB would install an extension
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    sql = PROBES[probe].format(**{k: str(v) for k, v in vars(places).items()})
    before = tree_digest(filled_store.root)
    args = ["query", sql, "--store", str(filled_store.root)]
    result = runner.invoke(app, [*args, "--allow-files"] if allow_files else args)
    err = flat(result.stderr)
    assert result.exit_code == 1 and "query refused" in err, err
    assert "Traceback" not in err
    assert tree_digest(filled_store.root) == before
    assert sorted(p.name for p in places.outside.iterdir()) == ["in.csv"]
    assert list(home.iterdir()) == []
    assert result_count(filled_store) == 1
    again = runner.invoke(app, ["query", "SELECT count(*) AS n FROM results", *args[2:]])
    assert again.exit_code == 0, again.stderr  # the store still reads


# --- guard 1: the parse-tree check ----------------------------------------------------------


def test_every_nested_write_form_is_refused_by_the_check(places: Places) -> None:
    generated = forms(places, depth=1) + forms(places, depth=2)
    assert len(generated) == len(WRITES) * (len(NESTINGS) + len(SQL_NESTINGS) ** 2)
    missed = [form_id for form_id, sql in generated if not refused(sql)]
    assert missed == []


def test_the_same_nestings_of_a_read_pass_the_check() -> None:
    # The check refuses writes, not nesting: each SQL nesting of a read is still a read.
    read = "SELECT request_id FROM results"
    for name in ["plain", "cte-used", "from-subquery", *SQL_NESTINGS, "explain", "explain-cte"]:
        assert not refused(NESTINGS[name](read)), name
    for outer, inner in itertools.product(SQL_NESTINGS, repeat=2):
        assert not refused(NESTINGS[outer](NESTINGS[inner](read))), (outer, inner)


def test_every_nested_write_form_fails_at_the_command_line(
    filled_store: Store, places: Places
) -> None:
    # The `query` command alone: building the whole `blend` app per call costs ~0.1 s.
    query_app = typer.Typer()
    query_app.command()(query_command)
    before = tree_digest(filled_store.root)
    for form_id, sql in forms(places):
        result = runner.invoke(query_app, [sql, "--store", str(filled_store.root)])
        err = flat(result.stderr)
        assert result.exit_code == 1, (form_id, result.stdout, err)
        assert "query refused" in err or "Parser Error" in err, (form_id, err)
    assert tree_digest(filled_store.root) == before
    assert sorted(p.name for p in places.outside.iterdir()) == ["in.csv"]


# --- guards 2 and 3 alone (the check skipped) -------------------------------------------------


def run_unchecked(store: Store, sql: str, allow_files: bool) -> str:
    """Run `sql` with the parse-tree check skipped; what happened, in a word or an error."""
    try:
        with _open_unchecked(store, sql, QueryOptions(allow_files=allow_files)) as result:
            list(result.batches)
            assert result.confined
    except duckdb.Error as exc:
        return type(exc).__name__
    return "ran"


@needs_landlock
def test_without_the_check_no_nested_write_form_changes_a_file(
    filled_store: Store, places: Places, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --allow-files turns DuckDB's own file limits off: what holds here is the kernel alone.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    before = tree_digest(filled_store.root)
    outcomes = {}
    for form_id, sql in forms(places):
        if parses(sql):
            outcomes[form_id] = run_unchecked(filled_store, sql, allow_files=True)
            assert tree_digest(filled_store.root) == before, form_id
            assert sorted(p.name for p in places.outside.iterdir()) == ["in.csv"], form_id
    assert list(home.iterdir()) == []
    # The forms did reach DuckDB and fail there (not at our parser): the copies were tried.
    assert outcomes["copy-partitioned-overwrite:cte"] == "IOException"
    assert outcomes["copy-forge-part:explain-analyze"] == "IOException"
    assert result_count(filled_store) == 1


@needs_landlock
@pytest.mark.parametrize("allow_files", [False, True], ids=["default", "allow-files"])
@pytest.mark.parametrize("probe", PROBES)
def test_without_the_check_the_issue_probes_change_nothing(
    filled_store: Store,
    places: Places,
    probe: str,
    allow_files: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    sql = PROBES[probe].format(**{k: str(v) for k, v in vars(places).items()})
    before = tree_digest(filled_store.root)
    outcome = run_unchecked(filled_store, sql, allow_files)
    assert outcome != "ran"
    assert tree_digest(filled_store.root) == before
    assert sorted(p.name for p in places.outside.iterdir()) == ["in.csv"]
    assert list(home.iterdir()) == []


SETTING_CHANGES = [
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "SET memory_limit = '1TB'",
    "SET GLOBAL threads = 1",
    "RESET lock_configuration",
    "RESET enable_external_access",
    "PRAGMA enable_profiling",
    "PRAGMA memory_limit = '1TB'",
    "SELECT * FROM enable_logging()",
    "SELECT * FROM enable_profiling()",
    "CALL disable_logging()",
    "SELECT * FROM add_grammar_extension('x')",
    "EXPLAIN ANALYZE SET threads = 1",
    "WITH x AS (SELECT 1) SELECT * FROM enable_logging()",
]


@pytest.mark.parametrize("change", SETTING_CHANGES)
def test_without_the_check_no_setting_changes(filled_store: Store, change: str) -> None:
    assert refused(change)
    # The change, then a read: the read would run only if the change had.
    outcome = run_unchecked(filled_store, f"{change}; SELECT 1 AS after", allow_files=False)
    assert outcome in {"InvalidInputException", "PermissionException"}, outcome


@needs_landlock
def test_the_query_thread_cannot_open_a_network_connection(filled_store: Store) -> None:
    # INSTALL with --allow-files would download; the kernel refuses the connection (and
    # the write of the extension file). DuckDB reports the failure as an error.
    assert run_unchecked(filled_store, "INSTALL httpfs", allow_files=True) != "ran"


def test_json_serialised_writes_are_refused() -> None:
    # What a serialised COPY in json_execute_serialized_sql would run, had the check let it.
    text = "WITH x AS (COPY (SELECT 1) TO '/tmp/x.csv') SELECT 1"
    assert json.loads(_serialized(text))["error"] is False
    assert refused(f"SELECT * FROM json_execute_serialized_sql({_literal(_serialized(text))})")


def test_a_kernel_that_refuses_confinement_runs_nothing(
    filled_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Landlock present but refusing (a misconfigured sandbox): fail closed, in one line.
    def refuse(writable: object = ()) -> int:
        raise landlock.LandlockError(1, "landlock_restrict_self failed: Operation not permitted")

    monkeypatch.setattr(landlock, "abi_version", lambda: 7)
    monkeypatch.setattr(landlock, "deny_writes_in_this_thread", refuse)
    result = runner.invoke(app, ["query", "SELECT 1", "--store", str(filled_store.root)])
    assert result.exit_code == 1 and result.stdout == ""
    assert flat(result.stderr).startswith("query not run: could not confine the query")
    assert "Traceback" not in result.stderr
