"""`prompts` has no primary key: ids stay unique per snapshot through the ingest alone, and
stores created while it had the key keep it and ingest the same tables."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from blend.ingest import ingest_file
from blend.ingest.load import ingest_memory_bytes
from blend.store.database import Store

# `prompts` as stores created before the key was dropped have it.
OLD_PROMPTS_DDL = """
CREATE TABLE prompts (
    dataset        VARCHAR   NOT NULL,
    snapshot       INTEGER   NOT NULL,
    request_id     VARCHAR   NOT NULL,
    line_no        BIGINT    NOT NULL,
    prompt_sha256  VARCHAR   NOT NULL,
    prompt         VARCHAR,
    messages_json  VARCHAR,
    sampling_json  VARCHAR   NOT NULL,
    max_tokens     INTEGER   NOT NULL,
    PRIMARY KEY (dataset, snapshot, request_id)
)
"""
KEYS = (
    "SELECT count(*) FROM duckdb_constraints() "
    "WHERE table_name = 'prompts' AND constraint_type = 'PRIMARY KEY'"
)


def derived_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def colliding_lines() -> list[str]:
    """Given ids that equal derived ids (suffixed or not) of other lines, in both orders."""
    same, other = derived_id("same"), derived_id("other")
    return [
        '{"prompt": "same"}',  # same
        f'{{"custom_id": "{same}-3", "prompt": "given first"}}',  # kept: seen before the derived
        '{"prompt": "same"}',  # same-2
        '{"prompt": "same"}',  # same-3: duplicate of line 2
        f'{{"custom_id": "{same}-2", "prompt": "given later"}}',  # duplicate of line 3
        f'{{"custom_id": "{other}", "prompt": "x"}}',
        '{"prompt": "other"}',  # duplicate of line 6
        '{"custom_id": "a", "prompt": "one"}',
        '{"id": "a", "prompt": "two"}',  # duplicate of line 8
    ]


def contents(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    with store.connect() as con:
        return {
            table: con.execute(f"SELECT * EXCLUDE (ingested_at) FROM {table}").fetchall()
            if table == "datasets"
            else con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            for table in ("prompts", "rejects", "datasets")
        }


def memory_caps_seen(store: Store, path: Path, dataset: str) -> list[str]:
    seen: list[str] = []
    with store.connect() as con:  # shares the database instance with ingest's connection

        def look(done: int, total: int) -> None:
            seen.append(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])

        ingest_file(store, path, dataset, progress=look)
    return seen


def shown(limit_bytes: int) -> str:
    """How DuckDB shows a memory cap of limit_bytes."""
    scratch = duckdb.connect()
    scratch.execute("SET memory_limit = ?", [f"{limit_bytes >> 20}MiB"])
    return str(scratch.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])


def test_no_snapshot_gets_a_repeated_id_through_ingest(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    first = tmp_path / "first.jsonl"
    first.write_text("".join(line + "\n" for line in colliding_lines()))
    second = tmp_path / "second.jsonl"  # the same ids again, as the next snapshot
    second.write_text("".join(line + "\n" for line in [*colliding_lines(), '{"prompt": "new"}']))
    for path in (first, second):
        ingest_file(store, path, "d", batch_rows=2)
    with store.connect() as con:
        assert con.execute(KEYS).fetchall() == [(0,)]
        per_snapshot = con.execute(
            "SELECT snapshot, count(*), count(DISTINCT request_id) FROM prompts "
            "GROUP BY snapshot ORDER BY snapshot"
        ).fetchall()
        rejected = con.execute(
            "SELECT line_no FROM rejects WHERE snapshot = 1 ORDER BY line_no"
        ).fetchall()
    assert per_snapshot == [(1, 5, 5), (2, 6, 6)]
    assert rejected == [(4,), (5,), (7,), (9,)]


def test_a_store_created_with_the_old_key_ingests_the_same_tables(tmp_path: Path) -> None:
    old, new = Store.open(tmp_path / "old"), Store.open(tmp_path / "new")
    with duckdb.connect(str(old.db_path)) as con:
        con.execute(OLD_PROMPTS_DDL)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(line + "\n" for line in colliding_lines()))
    n_lines = len(colliding_lines())
    assert memory_caps_seen(old, path, "d") == [shown(ingest_memory_bytes(n_lines, keyed=True))]
    assert memory_caps_seen(new, path, "d") == [shown(ingest_memory_bytes(n_lines))]
    assert contents(old) == contents(new)
    assert len(contents(old)["prompts"]) == 5
    with old.connect() as con:
        assert con.execute(KEYS).fetchall() == [(1,)]  # the old store keeps its key


def test_no_batch_stays_in_memory_until_the_commit(tmp_path: Path) -> None:
    """The whole ingest is one transaction: batches handed to DuckDB must be freed as they
    are written, not kept alive until the commit (DuckDB's register() does that)."""
    path = tmp_path / "in.jsonl"
    text = "word " * 50
    path.write_text(
        "".join(f'{{"custom_id": "r{i}", "prompt": "{text}{i}"}}\n' for i in range(6000))
    )
    live: list[int] = []
    ingest_file(
        Store.open(tmp_path / "store"),
        path,
        "d",
        batch_rows=200,  # 30 batches of ~50 KB of text each
        progress=lambda done, total: live.append(pa.total_allocated_bytes()),
    )
    assert len(live) == 30
    assert max(live[5:]) - live[4] < 500_000  # kept alive, 25 more batches would add > 1.2 MB
