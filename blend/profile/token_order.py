"""A profile's token rows in (token_ids, request_id) order, in memory that does not grow.

Invariant: `sorted_token_tables` yields every row of one (dataset, snapshot, tokenizer) of
`prompt_tokens` exactly once, in the order of `ORDER BY token_ids, request_id` (numeric,
shorter prefix first, ties by request_id), as Arrow tables of at most ~2 x range_tokens
tokens each (a single longer prompt is a table of its own).

DuckDB cannot give that order in bounded memory: its window over the order cannot spill,
and its ORDER BY of list (or blob) keys needs memory that grows with the rows (1M prompts of
~470 tokens failed under a 512 MiB cap). So this is a sample sort: a fixed pseudo-random
sample of the rows (by a hash of request_id) gives splitters that cut the order into ranges
of ~range_tokens tokens; one streamed pass writes each row to its range's scratch file
under the store's tmp/ folder; each range is then read back, sorted in memory by Arrow and
handed on, in range order. A range that came out over twice its size is cut again the same
way. Memory: one range, one streamed batch and the sample; disk: the rows once more
(lz4-compressed Arrow IPC), removed as the ranges are read.

Order keys are the token ids as big-endian 32-bit words with the sign bit flipped, so that
comparing keys as bytes (Arrow's order for binary) compares the id lists as numbers, with a
list before every longer list it prefixes.
"""

from __future__ import annotations

import math
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from blend.store import sql
from blend.store.database import fetch_dicts

RANGE_TOKENS = 1 << 23  # tokens per sorted range (32 MiB of ids; sorting one holds ~4x)
MAX_RANGES = 256  # ranges per cut (open scratch files); more data is cut again per range
SAMPLE_PER_RANGE = 32  # sample rows per range: ranges come out within ~1.5x of their size
READ_BATCH_ROWS = 8192  # rows per batch streamed out of DuckDB or a scratch file
SCRATCH_PREFIX = "profile-order-"  # <tmp>/profile-order-<uuid>/range-<n>.arrow

_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")

BatchSource = Callable[[], Iterator[pa.RecordBatch]]  # each call streams the rows anew


@dataclass(frozen=True, slots=True)
class TokenRows:
    """Which rows are sorted: the statement that streams them (an sql/ name, run with the
    caller's params), the one that counts them when it is cheaper than counting the stream,
    the column that breaks ties between equal token lists and its type, and the scratch
    folders' prefix. The default is a profile's prompt_tokens.

    The splitters' sample is drawn from the stream's own relation (a top-n by a hash of the
    tie: a fixed pseudo-random sample, DuckDB holding only the sample), so one statement says
    which rows are sorted.
    """

    rows_sql: str = "profile/token_rows"  # every row: <tie>, token_ids
    counts_sql: str | None = "profile/token_counts"  # n_rows, n_tokens (None: of the stream)
    tie: str = "request_id"
    tie_type: pa.DataType = field(default_factory=pa.string)
    scratch_prefix: str = SCRATCH_PREFIX

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([(self.tie, self.tie_type), ("token_ids", pa.list_(pa.int32()))])


PROFILE_ROWS = TokenRows()


@dataclass(frozen=True, slots=True)
class _Splitters:
    """Cut points of the order: range r holds the rows from splitter r - 1 (included) to
    splitter r (excluded); keys ascending, ties in key by request_id."""

    keys: np.ndarray  # object array of order keys (bytes)
    request_ids: list[Any]  # the splitters' tie values

    def range_of(self, keys: np.ndarray, request_ids: pa.Array) -> np.ndarray:
        """The range of each row: how many splitters sort at or before it."""
        below = np.searchsorted(self.keys, keys, side="left")
        upto = np.searchsorted(self.keys, keys, side="right")
        ranges = below.astype(np.int64)
        # a row whose key equals splitters' keys: those at or before it by request_id count
        for row in np.flatnonzero(upto > below).tolist():
            rid = request_ids[row].as_py()
            ranges[row] += sum(1 for s in self.request_ids[below[row] : upto[row]] if s <= rid)
        return ranges


def sorted_token_tables(
    con: duckdb.DuckDBPyConnection,
    params: dict[str, Any],
    tmp_dir: Path,
    range_tokens: int | None = None,
    source: TokenRows = PROFILE_ROWS,
) -> Iterator[pa.Table]:
    """The token rows of `params` (dataset, snapshot, tokenizer_sha256) in sorted order.

    range_tokens: tokens per sorted range (default RANGE_TOKENS). Reads through `con` itself
    (so rows its open transaction wrote are seen) and runs no other statement on it while a
    stream is open. `source`: other rows to sort the same way (the plan's requests).
    """
    range_tokens = range_tokens or RANGE_TOKENS

    def relation() -> duckdb.DuckDBPyRelation:
        return con.sql(sql.load(source.rows_sql), params=params)

    n_rows, n_tokens = _counts(con, params, source, relation)
    if n_rows == 0:
        return

    def rows() -> Iterator[pa.RecordBatch]:
        yield from relation().to_arrow_reader(READ_BATCH_ROWS)

    if n_tokens <= 2 * range_tokens:
        yield _sorted(pa.Table.from_batches(list(rows()), source.schema), source.tie)
        return
    for stale in tmp_dir.glob(f"{source.scratch_prefix}*"):  # a killed profile's (the caller holds
        shutil.rmtree(stale, ignore_errors=True)  # the store's writer lock: none is in use)
    n_ranges = _n_ranges(n_tokens, range_tokens)
    sample_rows = _sample_rows(n_ranges, n_rows, n_tokens, range_tokens)
    yield from _cut(
        rows, _sample(con, relation, source, sample_rows), n_ranges, tmp_dir, range_tokens, source
    )


def _sample(
    con: duckdb.DuckDBPyConnection,
    relation: Callable[[], duckdb.DuckDBPyRelation],
    source: TokenRows,
    n_rows: int,
) -> pa.Table:
    """n_rows rows of the stream picked by a hash of their tie (a fixed pseudo-random sample).

    The ties are picked first and their token lists fetched by a semi join: a top-n that
    carried the lists ran out of the 1 GiB cap at 10M prompts, this holds n_rows ties.
    """
    tie = source.tie
    picked = relation().select(tie).order(f"hash({tie}), {tie}").limit(n_rows).to_arrow_table()
    return relation().join(con.from_arrow(picked), tie, how="semi").to_arrow_table()


def _counts(
    con: duckdb.DuckDBPyConnection,
    params: dict[str, Any],
    source: TokenRows,
    relation: Callable[[], duckdb.DuckDBPyRelation],
) -> tuple[int, int]:
    """(rows, tokens) that the stream of `source` holds."""
    if source.counts_sql is not None:
        counts = fetch_dicts(con, sql.load(source.counts_sql), params)[0]
        return int(counts["n_rows"]), int(counts["n_tokens"])
    [(n_rows, n_tokens)] = relation().aggregate("count(*), sum(len(token_ids))").fetchall()
    return int(n_rows), int(n_tokens or 0)


def _cut(
    rows: BatchSource,
    sample: pa.Table,
    n_ranges: int,
    tmp_dir: Path,
    range_tokens: int,
    source: TokenRows,
) -> Iterator[pa.Table]:
    """Write the rows to range files by the sample's splitters, then yield each range sorted."""
    folder = tmp_dir / f"{source.scratch_prefix}{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    try:
        splitters = _splitters(sample, n_ranges, source.tie)
        sizes = _write_ranges(rows, splitters, folder, source)
        for index, (n_rows, n_tokens) in enumerate(sizes):
            path = _range_path(folder, index)
            if n_rows == 0:
                continue
            if n_tokens > 2 * range_tokens and n_rows > 1:
                yield from _cut_again(path, n_rows, n_tokens, tmp_dir, range_tokens, source)
            else:
                yield _sorted(_read_range(path), source.tie)
            path.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _cut_again(
    path: Path, n_rows: int, n_tokens: int, tmp_dir: Path, range_tokens: int, source: TokenRows
) -> Iterator[pa.Table]:
    """Sort a range that came out too large: cut it the same way, sampled from its file."""
    n_ranges = _n_ranges(n_tokens, range_tokens)
    keep = _sample_rows(n_ranges, n_rows, n_tokens, range_tokens) / n_rows
    rng = np.random.default_rng(n_rows)  # fixed: the same data cuts the same way
    picked = [
        batch.filter(pa.array(rng.random(batch.num_rows) < keep)) for batch in _range_batches(path)
    ]
    sample = pa.Table.from_batches(picked, source.schema)
    if sample.num_rows < 2:  # too thin to cut by (by chance): the first rows instead
        sample = _head(path, 2 * n_ranges, source.schema)
    yield from _cut(lambda: _range_batches(path), sample, n_ranges, tmp_dir, range_tokens, source)


def _n_ranges(n_tokens: int, range_tokens: int) -> int:
    return max(2, min(MAX_RANGES, math.ceil(n_tokens / range_tokens)))


def _sample_rows(n_ranges: int, n_rows: int, n_tokens: int, range_tokens: int) -> int:
    """Sample rows for n_ranges splitters: SAMPLE_PER_RANGE each, fewer for long prompts
    (the sample holds at most ~range_tokens tokens), never fewer than one per range."""
    mean_tokens = max(1, n_tokens // n_rows)
    by_tokens = max(n_ranges, range_tokens // mean_tokens)
    return min(n_rows, n_ranges * SAMPLE_PER_RANGE, by_tokens)


def _splitters(sample: pa.Table, n_ranges: int, tie: str) -> _Splitters:
    """Splitters that cut the sample's sorted rows into n_ranges of equal tokens."""
    ordered = _sorted(sample, tie)
    tokens = pc.list_value_length(ordered.column("token_ids")).to_numpy(zero_copy_only=False)
    cumulative = np.cumsum(tokens.astype(np.int64) + 1)  # + 1: empty prompts weigh too
    targets = cumulative[-1] * np.arange(1, n_ranges) / n_ranges
    picks = np.unique(np.searchsorted(cumulative, targets, side="left") + 1)
    picks = picks[picks < ordered.num_rows]  # a cut before the sample's row `pick`
    if not len(picks) and ordered.num_rows > 1:  # one row held most tokens: cut mid-way,
        picks = np.array([ordered.num_rows // 2])  # so that a cut always makes progress
    keys = order_keys(ordered.column("token_ids").combine_chunks())
    request_ids = ordered.column(tie).to_pylist()
    return _Splitters(
        keys=keys.to_numpy(zero_copy_only=False)[picks],
        request_ids=[request_ids[i] for i in picks.tolist()],
    )


def _write_ranges(
    rows: BatchSource, splitters: _Splitters, folder: Path, source: TokenRows
) -> list[tuple[int, int]]:
    """Stream the rows into one file per range; (rows, tokens) of each range."""
    n_ranges = len(splitters.request_ids) + 1
    sizes = [(0, 0)] * n_ranges
    writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
    try:
        for batch in rows():
            tokens = batch.column("token_ids")
            keys = order_keys(tokens).to_numpy(zero_copy_only=False)
            ranges = splitters.range_of(keys, batch.column(source.tie))
            lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
            order = np.argsort(ranges, kind="stable")
            bounds = np.searchsorted(ranges[order], np.arange(n_ranges + 1))
            for index in np.flatnonzero(np.diff(bounds)).tolist():
                take = order[bounds[index] : bounds[index + 1]]
                if index not in writers:
                    sink = pa.OSFile(str(_range_path(folder, index)), "wb")
                    writers[index] = pa.ipc.new_stream(sink, source.schema, options=_IPC_OPTIONS)
                writers[index].write_batch(batch.take(pa.array(take)))
                n, t = sizes[index]
                sizes[index] = (n + len(take), t + int(lengths[take].sum()))
    finally:
        for writer in writers.values():
            writer.close()
    return sizes


def _range_path(folder: Path, index: int) -> Path:
    return folder / f"range-{index:05d}.arrow"


def _range_batches(path: Path) -> Iterator[pa.RecordBatch]:
    with pa.OSFile(str(path), "rb") as source:
        yield from pa.ipc.open_stream(source)


def _head(path: Path, n_rows: int, schema: pa.Schema) -> pa.Table:
    """The first n_rows rows of a range file (all of them if it has fewer)."""
    batches: list[pa.RecordBatch] = []
    for batch in _range_batches(path):
        batches.append(batch)
        if sum(b.num_rows for b in batches) >= n_rows:
            break
    return pa.Table.from_batches(batches, schema).slice(0, n_rows)


def _read_range(path: Path) -> pa.Table:
    with pa.OSFile(str(path), "rb") as source:
        return pa.ipc.open_stream(source).read_all()


def _sorted(table: pa.Table, tie: str = "request_id") -> pa.Table:
    """The rows in (token_ids, tie) order."""
    table = table.combine_chunks()
    keys = order_keys(table.column("token_ids").combine_chunks())
    keyed = pa.table({"key": keys, "tie": table.column(tie)})
    order = pc.sort_indices(keyed, [("key", "ascending"), ("tie", "ascending")])
    return table.take(order)


def order_keys(token_ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One binary key per token list; keys compare as bytes as the lists compare as numbers."""
    if isinstance(token_ids, pa.ChunkedArray):
        token_ids = token_ids.combine_chunks()
    offsets = token_ids.offsets.to_numpy().astype(np.int64)
    values = token_ids.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]
    # sign bit flipped: signed order becomes unsigned order; big-endian: byte order is numeric
    words = (values.astype(np.int32).view(np.uint32) ^ np.uint32(1 << 31)).astype(">u4")
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(),
        len(token_ids),
        [None, pa.py_buffer((offsets - offsets[0]) * 4), pa.py_buffer(words.tobytes())],
    )
