"""The transactional writer: write one snapshot's rows inside one transaction.

One transaction spans the whole ingest. Accepted rows go straight into `prompts` under the new
snapshot number (where they are written once, not staged then copied); where each came from
goes to a narrow TEMP table and rejects to another. Then derived ids are numbered, repeated ids
deleted (the first occurrence stays) and staged as rejects, and the rejects and the `datasets`
row written before the commit. Invariant: a snapshot's prompts, rejects and `datasets` row
become visible together at the commit, or not at all; a crash leaves nothing visible and a
re-run redoes the whole file. Python never holds more than one batch of rows.

Stores created while `prompts` had its primary key (sql/schema/001_ingest.sql) cannot take
repeated ids even for a moment: there the rows are staged in a TEMP table, given their final
ids, and copied into `prompts` at the end (`Target.direct` False).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import duckdb
import pyarrow as pa

from blend.ingest.fast import FAST_SCHEMA
from blend.ingest.records import IngestReport, PromptRow, RejectRow, reason_category
from blend.store import sql
from blend.store.memory import physical_memory_bytes

# DuckDB memory while a file is staged and published: beyond it the TEMP staging tables,
# sorts and joins spill to the store's temporary folder, so peak memory does not follow the
# file (10M prompts stage several GB). A fixed cap suffices since `prompts` has no primary key
# (sql/schema/001_ingest.sql).
INGEST_MEMORY_BYTES = 1 << 30
# Stores created before the key was dropped keep it, and its index cannot spill when the commit
# writes it: 10M rows failed to commit under 1 GB and passed under 2 GB, so for them the cap
# leaves INDEX_BYTES_PER_ROW per record (twice what 10M rows needed), at least
# MIN_KEYED_MEMORY_BYTES. No cap exceeds DuckDB's own default (80% of RAM).
MIN_KEYED_MEMORY_BYTES = 2 << 30
INDEX_BYTES_PER_ROW = 256
# The reject category of a prompt whose request_id appeared on an earlier line.
DUPLICATE_ID = "duplicate id"

# Column order of PromptRow / RejectRow and of the staging tables (sql/ingest/create_staged_*).
# = FAST_SCHEMA (the vectorised path's columns) with the validator's prompt_sha256 third.
_PROMPT_BATCH_SCHEMA = FAST_SCHEMA.insert(2, pa.field("prompt_sha256", pa.string()))
_REJECT_BATCH_SCHEMA = pa.schema(
    [("line_no", pa.int64()), ("reason", pa.string()), ("raw", pa.string())]
)


def _arrow(rows: list[PromptRow] | list[RejectRow], schema: pa.Schema) -> pa.Table:
    columns = zip(*rows, strict=True)  # rows -> columns, in C
    # pyarrow converts lists markedly faster than the tuples zip gives.
    arrays = [
        pa.array(list(column), type=f.type) for column, f in zip(columns, schema, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


@dataclass(frozen=True, slots=True)
class Source:
    """Which file a snapshot comes from."""

    dataset: str
    source_uri: str  # absolute path, or the URI as given less credentials (remote.py)
    source_sha256: str  # hex sha256 of the file's bytes
    source_format: str  # a SourceFormat value


@dataclass(slots=True)
class StagedCounts:
    """What has been staged so far; grows with each batch."""

    n_prompts: int = 0  # accepted by validation (duplicate ids included)
    n_derived: int = 0  # of which without custom_id/id (request_id derived from the hash)
    n_rejects: int = 0
    reject_reasons: Counter[str] = field(default_factory=Counter)  # category -> count
    first_reject_line: dict[str, int] = field(default_factory=dict)  # category -> line_no


@dataclass(frozen=True, slots=True)
class Published:
    """The snapshot `publish` wrote."""

    snapshot: int
    n_rows: int  # prompts written
    n_rejected: int  # rejects written, duplicate ids included


class Duplicate(NamedTuple):
    """A staged prompt whose request_id appeared on an earlier line."""

    line_no: int
    reason: str  # "duplicate id: <id> (first seen on line N)"
    raw_offset: int  # where its source text lies (see RawRecord.offset / length)
    raw_length: int


@dataclass(frozen=True, slots=True)
class Target:
    """The snapshot being written, and how."""

    dataset: str
    snapshot: int
    direct: bool  # rows go straight into `prompts`; False: staged first (keyed `prompts`)

    def where(self) -> dict[str, object]:
        return {"dataset": self.dataset, "snapshot": self.snapshot}


def open_snapshot(con: duckdb.DuckDBPyConnection, dataset: str) -> Target:
    """The next snapshot of `dataset`; call inside the ingest's transaction."""
    snapshot = _scalar(con, "ingest/next_snapshot", {"dataset": dataset})
    keyed = _scalar(con, "ingest/prompts_key", {}) == 1
    return Target(dataset, snapshot, direct=not keyed)


class Stager:
    """Writes batches of validated rows for one snapshot (see the module docstring)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, target: Target) -> None:
        self._con = con
        self._target = target
        self.counts = StagedCounts()
        if not target.direct:
            con.execute(sql.load("ingest/create_staged_prompts"))
        con.execute(sql.load("ingest/create_staged_lines"))
        con.execute(sql.load("ingest/create_staged_rejects"))

    def append(self, prompts: list[PromptRow], rejects: list[RejectRow]) -> None:
        """Stage one batch (either list may be empty)."""
        if prompts:
            self._write_prompts(_arrow(prompts, _PROMPT_BATCH_SCHEMA))
        if rejects:
            self._run_on_batch(
                [("ingest/stage_rejects", {})], _arrow(rejects, _REJECT_BATCH_SCHEMA)
            )
            self._count_rejects(rejects)

    def append_decided(
        self, accepted: pa.Table, prompts: list[PromptRow], rejects: list[RejectRow]
    ) -> None:
        """Stage one block of the vectorised path: the rows it accepted (blend/ingest/fast.py
        FAST_SCHEMA, hashed when published) merged in line order with the validator's."""
        unhashed = pa.nulls(accepted.num_rows, pa.string())
        batch = accepted.add_column(2, "prompt_sha256", unhashed)
        if prompts:  # staged in line order, like the exact path's batches
            batch = pa.concat_tables([batch, _arrow(prompts, _PROMPT_BATCH_SCHEMA)])
            batch = batch.sort_by("line_no")
        if batch.num_rows:
            self._write_prompts(batch)
        self.append([], rejects)

    def _write_prompts(self, batch: pa.Table) -> None:
        target = self._target
        statements: list[tuple[str, dict[str, object]]] = [("ingest/stage_lines", {})]
        if target.direct:
            statements.append(("ingest/write_prompt_batch", target.where()))
        else:
            statements.append(("ingest/stage_prompts", {}))
        self._run_on_batch(statements, batch)
        self.counts.n_prompts += batch.num_rows
        self.counts.n_derived += batch["request_id"].null_count

    def _run_on_batch(
        self, statements: list[tuple[str, dict[str, object]]], batch: pa.Table
    ) -> None:
        """Run statements that read `batch` as `ingest_batch`.

        DuckDB finds the local variable by its name (a replacement scan). Not register():
        inside a transaction DuckDB keeps every registered Arrow table alive until the commit,
        so memory grew with the file (~250 B/row).
        """
        ingest_batch = batch  # noqa: F841 - read by the statements, see above
        for statement, params in statements:
            self._con.execute(sql.load(statement), params)

    def _count_rejects(self, rejects: list[RejectRow]) -> None:
        counts = self.counts
        counts.n_rejects += len(rejects)
        for reject in rejects:
            category = reason_category(reject.reason)
            counts.reject_reasons[category] += 1
            counts.first_reject_line.setdefault(category, reject.line_no)


@contextmanager
def bounded_memory(con: duckdb.DuckDBPyConnection, n_records: int) -> Iterator[None]:
    """Cap DuckDB's memory for an ingest of up to n_records (ingest_memory_bytes) for the
    block, then restore the setting (it belongs to the database instance, which others may
    share)."""
    before = con.execute(sql.load("ingest/memory_limit")).fetchall()[0][0]
    keyed = _scalar(con, "ingest/prompts_key", {}) == 1
    limit = f"{ingest_memory_bytes(n_records, keyed=keyed) >> 20}MiB"
    con.execute(sql.load("ingest/reset_memory_limit"))
    was_default = con.execute(sql.load("ingest/memory_limit")).fetchall()[0][0] == before
    con.execute(sql.load("ingest/set_memory_limit"), {"limit": limit})
    try:
        yield
    finally:
        # The setting reads back rounded ("18.8 GiB"): the default is restored exactly.
        if was_default:
            con.execute(sql.load("ingest/reset_memory_limit"))
        else:
            con.execute(sql.load("ingest/set_memory_limit"), {"limit": before})


def ingest_memory_bytes(n_records: int, *, keyed: bool = False) -> int:
    """DuckDB's memory cap for ingesting a file of up to n_records, in bytes: fixed, unless
    `prompts` has the old primary key (keyed), whose index needs room per record."""
    ram = physical_memory_bytes()
    if not keyed:
        return min(int(ram * 0.8), INGEST_MEMORY_BYTES)
    return min(int(ram * 0.8), max(MIN_KEYED_MEMORY_BYTES, INDEX_BYTES_PER_ROW * n_records))


def assign_ids(con: duckdb.DuckDBPyConnection, target: Target, staged: StagedCounts) -> int:
    """Give every written prompt its final request_id; return how many repeat an earlier id.

    Repeated ids are found here, in SQL (the first occurrence is kept), so that no set of all
    ids is ever held in Python; delete_duplicates (in publish) removes them.
    """
    if not target.direct:
        con.execute(sql.load("ingest/assign_ids"))
    else:
        if staged.n_derived:
            con.execute(sql.load("ingest/renumber_derived"), target.where())
        con.execute(sql.load("ingest/find_duplicates"), target.where())
    return _scalar(con, "ingest/count_duplicates", {})


def duplicates(con: duckdb.DuckDBPyConnection, page_rows: int) -> Iterator[list[Duplicate]]:
    """The duplicate-id prompts (after assign_ids) in line order, page_rows at a time.

    Each page is fetched whole, so the connection is free between pages to stage the rejects.
    """
    after_line = 0
    while True:
        rows = con.execute(
            sql.load("ingest/duplicates_page"), {"after_line": after_line, "limit": page_rows}
        ).fetchall()
        if not rows:
            return
        yield [Duplicate(*row) for row in rows]
        after_line = rows[-1][0]


def publish(
    con: duckdb.DuckDBPyConnection, source: Source, target: Target, staged: StagedCounts
) -> Published:
    """Complete snapshot target.snapshot of source.dataset; the caller's transaction commits.

    Expects assign_ids to have run and the duplicate-id prompts to be staged as rejects.
    """
    n_duplicates = staged.reject_reasons[DUPLICATE_ID]
    published_rows = staged.n_prompts - n_duplicates
    where = target.where()
    if not target.direct:
        inserted = _scalar(con, "ingest/insert_prompts", where)
    else:
        if n_duplicates:
            con.execute(sql.load("ingest/delete_duplicates"), where)
        inserted = _scalar(con, "ingest/count_prompts", where)
    if inserted != published_rows:  # written rows and ids out of step: never publish that
        raise RuntimeError(
            f"ingest: {inserted} prompts written but {published_rows} expected; rolled back"
        )
    con.execute(sql.load("ingest/insert_rejects"), where)
    con.execute(
        sql.load("ingest/insert_dataset"),
        {
            **where,
            "source_uri": source.source_uri,
            "source_sha256": source.source_sha256,
            "source_format": source.source_format,
            "n_rows": published_rows,
            "n_rejected": staged.n_rejects,
        },
    )
    return Published(target.snapshot, published_rows, staged.n_rejects)


def find_snapshot(
    con: duckdb.DuckDBPyConnection, dataset: str, source_sha256: str
) -> IngestReport | None:
    """The report of the latest snapshot of `dataset` made from this content, if any
    (reused=True, seconds=0)."""
    rows = con.execute(
        sql.load("ingest/find_snapshot"), {"dataset": dataset, "source_sha256": source_sha256}
    ).fetchall()
    if not rows:
        return None
    snapshot, source_uri, source_format, n_rows, n_rejected = rows[0]
    reasons = con.execute(
        sql.load("ingest/reject_counts"), {"dataset": dataset, "snapshot": snapshot}
    ).fetchall()
    return IngestReport(
        dataset=dataset,
        snapshot=snapshot,
        source_uri=source_uri,
        source_sha256=source_sha256,
        source_format=source_format,
        n_rows=n_rows,
        n_rejected=n_rejected,
        reused=True,
        reject_reasons=dict(reasons),
    )


def _scalar(con: duckdb.DuckDBPyConnection, statement: str, params: dict[str, object]) -> int:
    # fetchall drains the result: in DuckDB 2.0 an open result blocks the connection.
    rows = con.execute(sql.load(statement), params).fetchall()
    return int(rows[0][0])
