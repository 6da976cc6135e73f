"""`blend query` reads and never writes: every writing statement is refused (by type, before
the store is opened), the store's files are byte-for-byte unchanged afterwards, host files are
out of reach without --allow-files, and a writer holding the database gets a clear message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from blend.cli import app
from blend.store.database import Store, StoreNotReadableError
from blend.store.query import QueryRefusedError, read_statement, run_query
from tests.support.attacks import tree_digest
from tests.support.cli_text import flat

runner = CliRunner()

# (statement, the statement type the refusal names)
WRITING = [
    ("DROP TABLE prompts", "DROP"),
    ("DELETE FROM prompts", "DELETE"),
    ("INSERT INTO datasets SELECT * FROM datasets", "INSERT"),
    ("UPDATE prompts SET prompt = 'x'", "UPDATE"),
    ("CREATE TABLE evil AS SELECT 1", "CREATE"),
    ("CREATE TEMP TABLE t AS SELECT 1", "CREATE"),
    ("CREATE OR REPLACE VIEW results AS SELECT 1", "CREATE"),
    ("ALTER TABLE prompts ADD COLUMN x INT", "ALTER"),
    ("COPY (SELECT * FROM prompts) TO '{outside}/stolen.csv'", "COPY"),
    ("COPY prompts FROM '{outside}/in.csv'", "COPY"),
    ("EXPORT DATABASE '{outside}/dump'", "EXPORT"),
    ("ATTACH '{outside}/other.duckdb' AS other", "ATTACH"),
    ("DETACH other", "DETACH"),
    ("INSTALL httpfs", "INSTALL"),
    ("LOAD httpfs", "LOAD"),
    ("SET enable_external_access = true", "SET"),
    ("SET allowed_directories = ['/']", "SET"),
    ("RESET lock_configuration", "RESET"),
    ("PRAGMA enable_profiling", "PRAGMA"),
    ("CALL checkpoint()", "CALL"),
    ("CHECKPOINT", "CHECKPOINT"),
    ("VACUUM", "VACUUM"),
    ("BEGIN TRANSACTION", "BEGIN"),
    ("USE memory", "USE"),
    ("UPDATE EXTENSIONS", "UPDATE"),
    ("SELECT 1; DROP TABLE prompts", "DROP"),
    ("SELECT 1; COPY (SELECT 1) TO '{outside}/x.csv'", "COPY"),
]


def query(store: Store, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["query", *args, "--store", str(store.root)])
    return result.exit_code, result.stdout, flat(result.stderr)


def counts(store: Store) -> dict[str, int]:
    rows = {}
    for table in ("prompts", "datasets", "results"):
        code, out, err = query(store, f"SELECT count(*) AS n FROM {table}", "--format", "json")
        assert code == 0, err
        rows[table] = json.loads(out)[0]["n"]
    return rows


@pytest.mark.parametrize(("statement", "kind"), WRITING)
def test_writing_statements_are_refused_and_the_store_is_unchanged(
    filled_store: Store, tmp_path: Path, statement: str, kind: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    before = tree_digest(filled_store.root)
    code, _, err = query(filled_store, statement.format(outside=outside))
    assert code == 1
    assert "query refused" in err and f"{kind} statement" in err, err
    assert "only reads" in err
    assert tree_digest(filled_store.root) == before
    assert list(outside.iterdir()) == []
    assert counts(filled_store) == {"prompts": 2, "datasets": 1, "results": 1}


def test_the_database_refuses_writes_that_pass_the_statement_check(filled_store: Store) -> None:
    # Defence in depth: a read-only connection, even if a writing statement got through.
    from blend.store.database import connect_read_only

    with connect_read_only(filled_store) as con, pytest.raises(duckdb.Error, match="read-only"):
        con.execute("DROP TABLE prompts")


def test_selects_over_tables_and_views_work(filled_store: Store) -> None:
    code, out, err = query(
        filled_store,
        "SELECT r.request_id, p.prompt, r.output_text FROM results AS r "
        "JOIN prompts AS p USING (request_id)",
        "--format",
        "csv",
    )
    assert code == 0, err
    assert out.splitlines() == ["request_id,prompt,output_text", "a,hello,an answer"]
    for view in ("latest_results", "run_summary", "row_lineage", "estimate_accuracy"):
        code, _, err = query(filled_store, f"FROM {view}")
        assert code == 0, (view, err)
    code, out, _ = query(filled_store, "SHOW TABLES", "--format", "csv")
    assert code == 0 and "prompts" in out.split()


@pytest.mark.parametrize(
    "reader",
    [
        "SELECT * FROM read_csv('{host}')",
        "SELECT * FROM read_text('{host}')",
        "SELECT * FROM read_blob('{host}')",
        "SELECT * FROM glob('{folder}/*')",
        "SELECT * FROM read_parquet('{store}/results/../../host.txt')",
        "SELECT * FROM sniff_csv('{host}')",
    ],
)
def test_host_files_need_allow_files(filled_store: Store, tmp_path: Path, reader: str) -> None:
    host = tmp_path / "host.txt"
    host.write_text("secret,value\n1,2\n")
    sql = reader.format(host=host, folder=tmp_path, store=filled_store.root)
    code, out, err = query(filled_store, sql)
    assert code == 1 and "Permission Error" in err and "--allow-files" in err, err
    assert "secret" not in out
    if "results/.." not in sql:  # --allow-files lifts the limit (parquet of a CSV still fails)
        code, out, err = query(filled_store, sql, "--allow-files", "--format", "csv")
        assert code == 0, err


def test_the_results_parquet_stays_readable_by_path(filled_store: Store) -> None:
    glob = filled_store.results_dir / "**" / "*.parquet"
    code, out, err = query(filled_store, f"SELECT count(*) AS n FROM '{glob}'", "--format", "csv")
    assert code == 0, err
    assert out.splitlines() == ["n", "1"]


def test_parser_split_names_the_writing_statement_not_the_count() -> None:
    with pytest.raises(QueryRefusedError, match="statement 2 of 3 is a DROP statement"):
        read_statement("SELECT 1; DROP TABLE prompts; SELECT 2")
    with pytest.raises(QueryRefusedError, match="2 statements given"):
        read_statement("SELECT 1; SELECT 2")
    with pytest.raises(QueryRefusedError, match="no SQL statement"):
        read_statement("-- nothing")


def test_a_writer_holding_the_database_gives_a_clear_message(filled_store: Store) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('open', flush=True); "
            "sys.stdin.read()",
            str(filled_store.db_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        code, _, err = query(filled_store, "SELECT 1")
        assert code == 1
        assert "open for writing by another blend process" in err and "Traceback" not in err
        with pytest.raises(StoreNotReadableError, match="query again when it has finished"):
            run_query(filled_store, "SELECT 1")
    finally:
        holder.communicate("", timeout=30)
    assert run_query(filled_store, "SELECT count(*) AS n FROM prompts").to_pylist() == [{"n": 2}]


def test_a_store_without_a_database_is_not_created_by_a_query(tmp_path: Path) -> None:
    result = runner.invoke(app, ["query", "SELECT 1", "--store", str(tmp_path / "none")])
    assert result.exit_code == 1 and "no database" in flat(result.stderr)
    assert not (tmp_path / "none").exists()
