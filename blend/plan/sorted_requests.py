"""The plan's requests and length hints as columns, their prompts sorted in bounded memory.

Invariant: `read_sorted_requests` returns every request of a columns query (plan/
request_columns.sql: input order; execute/replan_columns.sql: plan order) and every hint of
its hints query as one PromptTokens that holds no token ids:
the prompts' lengths, their lexicographic order (ties by index: requests in input order, then
the hints, as a stable sort of the list would give) and the common prefixes of neighbours in
it. The order comes from profile/token_order.py's sample sort (range files under the store's
tmp/, one range in memory at a time), walked once for the common prefixes
(profile/prefix.py), so memory grows by a few numbers per prompt, never by its tokens. The
token ids of a few prompts (the search's sample) are read back from the store on demand, and
those of many (the group keys: a prompt of every group, up to every prompt) streamed back in
batches under DuckDB's memory cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from blend.planners.estimates import HintColumns
from blend.planners.prompt_tokens import PlanRequests, PromptTokens, TokenBatches
from blend.planners.request import EstimateSource
from blend.profile.prefix import lcp_with_previous
from blend.profile.token_order import TokenRows, sorted_token_tables
from blend.store import sql
from blend.store.database import Store, fetch_arrow
from blend.store.memory import memory_capped

PLAN_ROWS = TokenRows(
    rows_sql="plan/sort_rows",
    counts_sql=None,
    tie="tie",
    tie_type=pa.int64(),
    scratch_prefix="plan-order-",
)
REPLAN_ROWS = TokenRows(
    rows_sql="execute/replan_sort_rows",
    counts_sql=None,
    tie="tie",
    tie_type=pa.int64(),
    scratch_prefix="replan-order-",
)
_HINT_SCHEMA = pa.schema([("tie", pa.int64()), ("token_ids", pa.list_(pa.int32()))])
# DuckDB's memory while token ids stream back (bytes): the join on the wanted request ids
# spills past this (at 10M prompts every one of them may be wanted)
FETCH_DUCKDB_MEMORY_BYTES = 1 << 28
FETCH_BATCH_ROWS = 8192  # rows a streamed batch of token ids holds


@dataclass(frozen=True, slots=True)
class SortedRequests:
    """The requests (their prompts: root indices 0..n-1) and the hints' (n..), one sort."""

    requests: PlanRequests
    hints: HintColumns
    root: PromptTokens  # every prompt, requests then hints, sorted, no token ids held


@dataclass(frozen=True, slots=True)
class SortSource:
    """What to read and sort: a columns query (request_id, tie, n_prompt_tokens, max_tokens,
    own_output_tokens), a hints query (n_output_tokens, token_ids), the rows that
    sorted_token_tables streams (ties as the columns query's, hints as `plan_hint_rows`), and
    their parameters; `key` (dataset, snapshot, tokenizer_sha256) reads ids back."""

    columns_sql: str
    hints_sql: str
    rows: TokenRows
    columns_params: dict[str, Any]
    rows_params: dict[str, Any]
    key: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RequestQuery:
    """Which requests a plan reads (request_columns.sql's parameters)."""

    dataset: str
    snapshot: int
    tokenizer_sha256: str
    max_model_len: int
    done_model_sha256: str | None = None  # incremental: leave out what this model answered
    history_model_sha256: str | None = None  # this model's earlier results give lengths
    history_limit: int = 0  # earlier results read at most

    def key(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "snapshot": self.snapshot,
            "tokenizer_sha256": self.tokenizer_sha256,
        }

    def rows(self) -> dict[str, Any]:
        """sort_*.sql's parameters."""
        return {
            **self.key(),
            "done_model_sha256": self.done_model_sha256,
            "max_model_len": self.max_model_len,
        }

    def columns(self) -> dict[str, Any]:
        """request_columns.sql's and history_hints.sql's parameters."""
        return {
            **self.rows(),
            "history_model_sha256": self.history_model_sha256,
            "limit": self.history_limit,
        }

    def source(self) -> SortSource:
        return SortSource(
            "plan/request_columns",
            "plan/history_hints",
            PLAN_ROWS,
            self.columns(),
            self.rows(),
            self.key(),
        )


def read_sorted_requests(
    con: duckdb.DuckDBPyConnection, store: Store, query: RequestQuery | SortSource
) -> SortedRequests:
    """The requests of `query` (its columns query's), its history hints, and their sort;
    `store` reads token ids back later (the connection may be closed by then)."""
    source = query.source() if isinstance(query, RequestQuery) else query
    columns = _request_columns(con, source)
    hint_rows = fetch_arrow(con, sql.load(source.hints_sql), source.columns_params)
    n, h = len(columns.ties), hint_rows.num_rows
    hint_base = int(columns.ties.max()) + 1 if n else 0
    hint_ties = hint_base + np.arange(h, dtype=np.int64)
    hints_table = pa.table(
        {"tie": pa.array(hint_ties, pa.int64()), "token_ids": hint_rows["token_ids"]},
        schema=_HINT_SCHEMA,
    )
    hint_tokens = PromptTokens.from_arrow(hint_rows["token_ids"])
    lengths = np.concatenate((columns.lengths, hint_tokens.lengths))
    con.register("plan_hint_rows", hints_table)
    try:
        ties = np.concatenate((columns.ties, hint_ties))
        order, lcp = _sort(con, source, store.tmp_dir, ties, lengths)
    finally:
        con.unregister("plan_hint_rows")
    fetch = _Fetch(store, source.key, columns.request_ids, hint_tokens)
    root = PromptTokens.sorted_prompts(lengths, order, lcp, fetch, fetch.batches)
    requests = PlanRequests(
        request_ids=columns.request_ids,
        # without hints the root is the requests' prompts (a subset would copy its columns)
        prompts=root if h == 0 else root.subset(np.arange(n)),
        max_tokens=columns.max_tokens,
        output_len=columns.own,
        known_from=EstimateSource.OWN,
    )
    hints = HintColumns(
        prompts=root.subset(np.arange(n, n + h)),
        output_len=hint_rows["n_output_tokens"].to_numpy().astype(np.int64),
        warmup=np.zeros(h, dtype=bool),
        censored=np.zeros(h, dtype=bool),
        max_tokens=np.full(h, -1, dtype=np.int64),
    )
    return SortedRequests(requests, hints, root)


@dataclass(frozen=True, slots=True)
class _Columns:
    """The columns query's rows as arrays (its Arrow result is not kept: ~35 bytes a row)."""

    request_ids: pa.Array  # string
    ties: np.ndarray  # int64
    lengths: np.ndarray  # int64 prompt tokens (they add up to offsets)
    # int32: output lengths fit (ingest caps max_tokens at 2^20), and at 10M requests each
    # int64 column held through the re-plan's estimates was 40 MB more
    max_tokens: np.ndarray  # int32
    own: np.ndarray  # int32 own earlier output length, -1: none


def _request_columns(con: duckdb.DuckDBPyConnection, source: SortSource) -> _Columns:
    table = fetch_arrow(con, sql.load(source.columns_sql), source.columns_params)

    def numbers(name: str, missing: int | None = None, dtype: type = np.int64) -> np.ndarray:
        column = table[name] if missing is None else table[name].fill_null(missing)
        return np.asarray(column.to_numpy(), dtype=dtype)

    return _Columns(
        table["request_id"].combine_chunks(),
        numbers("tie"),
        numbers("n_prompt_tokens"),
        numbers("max_tokens", dtype=np.int32),
        numbers("own_output_tokens", -1, dtype=np.int32),
    )


def _sort(
    con: duckdb.DuckDBPyConnection,
    source: SortSource,
    tmp_dir: Path,
    ties: np.ndarray,
    lengths: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices in lexicographic order, ties by index; LCP with the previous one) of the rows
    whose tie values are `ties` (distinct): source.rows, by the bounded sample sort."""
    by_tie = np.argsort(ties, kind="stable")
    sorted_ties = ties[by_tie]
    orders, lcps = [], []
    previous = np.zeros(0, dtype=np.int32)
    tables = sorted_token_tables(con, source.rows_params, tmp_dir, source=source.rows)
    for table in tables:
        tokens = table.column("token_ids").combine_chunks()
        if len(tokens.values) and int(np.min(tokens.values.to_numpy())) < 0:
            raise ValueError("a token id is negative: pass tokenizer ids")
        tie = table.column("tie").to_numpy()
        at = np.minimum(np.searchsorted(sorted_ties, tie), max(len(ties) - 1, 0))
        if not np.array_equal(sorted_ties[at], tie):
            raise ValueError("the sorted prompts are not the requests read (changed meanwhile?)")
        lcp, previous = lcp_with_previous(previous, tokens)
        orders.append(by_tie[at])
        lcps.append(lcp)
    del by_tie, sorted_ties  # before the ranges are joined: ~16 bytes a prompt less at once
    order = np.concatenate(orders) if orders else np.zeros(0, dtype=np.int64)
    del orders
    lcp = np.concatenate(lcps) if lcps else np.zeros(0, dtype=np.int64)
    del lcps
    if len(order) != len(ties):
        raise ValueError(f"sorted {len(order)} prompts for {len(ties)} requests and hints")
    if len(lcp):
        lcp[0] = 0
    order, lcp = order.astype(np.int64, copy=False), lcp.astype(np.int64, copy=False)
    return _ties_by_index(order, lcp, lengths)


def _ties_by_index(
    order: np.ndarray, lcp: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The order with equal prompts by index (the stream has them by tie value); equal
    prompts share all their tokens, so the adjacent LCPs stay what they are."""
    sorted_lengths = lengths[order]
    equal = np.zeros(len(order), dtype=bool)
    equal[1:] = (lcp[1:] == sorted_lengths[1:]) & (sorted_lengths[1:] == sorted_lengths[:-1])
    if not equal.any():
        return order, lcp
    klass = np.cumsum(~equal)
    return order[np.lexsort((order, klass))], lcp


@dataclass(frozen=True, slots=True)
class _Fetch:
    """Token ids of a few requests (read from the store by request_id) or hints (held)."""

    store: Store
    key: dict[str, Any]  # dataset, snapshot, tokenizer_sha256
    request_ids: pa.Array
    hints: PromptTokens

    def __call__(self, indices: np.ndarray) -> list[np.ndarray]:
        n = len(self.request_ids)
        out: list[np.ndarray] = [np.zeros(0, dtype=np.int32)] * len(indices)
        wanted = np.flatnonzero(indices < n)
        for k, i in enumerate(indices.tolist()):
            if i >= n:
                out[k] = self.hints[i - n]
        if len(wanted):
            table = pa.table(
                {
                    "pos": pa.array(wanted, pa.int64()),
                    "request_id": self.request_ids.take(pa.array(indices[wanted])),
                }
            )
            # capped: this connection may open the database afresh (the re-plan's reading one
            # is closed by now), and DuckDB's own default, 80% of RAM, let this join of a
            # search sample with 10M token rows take 7 GB
            with (
                self.store.connect(views=False) as con,
                memory_capped(con, FETCH_DUCKDB_MEMORY_BYTES, return_freed=True),
            ):
                con.register("wanted_requests", table)
                rows = fetch_arrow(con, sql.load("plan/tokens_of"), self.key)
                con.unregister("wanted_requests")
            for pos, tokens in zip(
                rows["pos"].to_pylist(),
                rows["token_ids"].to_numpy(zero_copy_only=False),
                strict=True,
            ):
                out[pos] = np.asarray(tokens)
        return out

    def batches(self, indices: np.ndarray) -> TokenBatches:
        """The token ids of these root indices, streamed (see TokenBatches): the hints' from
        memory, the requests' by one query whose rows come a batch at a time."""
        n = len(self.request_ids)
        hints = np.flatnonzero(indices >= n)
        if len(hints):
            yield hints, [self.hints[i - n] for i in indices[hints].tolist()]
        wanted = np.flatnonzero(indices < n)
        if not len(wanted):
            return
        table = pa.table(
            {"pos": pa.array(wanted), "request_id": self.request_ids.take(indices[wanted])}
        )
        with (
            self.store.connect(views=False) as con,
            memory_capped(con, FETCH_DUCKDB_MEMORY_BYTES, return_freed=True),
        ):
            con.register("wanted_requests", table)
            relation = con.sql(sql.load("plan/tokens_of"), params=self.key)
            for batch in relation.to_arrow_reader(FETCH_BATCH_ROWS):
                tokens = batch.column("token_ids")
                offsets = tokens.offsets.to_numpy().astype(np.int64)
                values = tokens.values.to_numpy(zero_copy_only=False)
                yield (
                    batch.column("pos").to_numpy(),
                    [
                        values[a:b]
                        for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)
                    ],
                )
            con.unregister("wanted_requests")
