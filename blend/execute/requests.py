"""A run's requests, staged once in plan order and read a chunk of positions at a time.

Invariant: one query joins the plan's items with their prompts and token ids, sorted by seq
(sql/execute/plan_requests.sql; DuckDB spills the sort past STAGING_MEMORY_BYTES), and
streams it into a Parquet file in the store's scratch folder, one row group per `chunk_rows`
positions. The run reads it a row group at a time and keeps `cached_chunks` of them decoded,
so a position costs the same however large the plan, and memory holds a few chunks and the
requests in flight, never the plan's token ids. The file is unlinked as soon as it is open
(the open handle keeps it readable), so nothing is left behind when the run ends or is
killed; a file a run killed while staging left is removed when the same run starts again.
"""

from __future__ import annotations

import bisect
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from blend.engines.base import EngineRequest
from blend.plan.items import PlanHeader
from blend.store import sql
from blend.store.database import Store
from blend.store.memory import memory_capped

STAGING_PREFIX = "execute-requests-"
STAGING_MEMORY_BYTES = 1 << 30  # DuckDB's memory for the staging sort (bytes); it spills past
READ_BATCH_ROWS = 8192  # rows per Arrow batch DuckDB hands over while staging
_COLUMNS = ("seq", "request_id", "prompt_sha256", "sampling_json", "token_ids")


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One row group, decoded: its positions and their columns as Python values."""

    seqs: np.ndarray  # int64, ascending
    first: int  # seqs[0]
    dense: bool  # seqs are first, first + 1, ...: a position's row is seq - first
    request_id: list[str]
    prompt_sha256: list[str]
    sampling_json: list[str]
    # parsed once per distinct JSON of the chunk, one read-only mapping shared by the rows
    # that hold it (a dataset's requests mostly share their sampling fields; parsing each
    # row's was ~8% of the executor's CPU with the null engine). A MappingProxyType does not
    # pickle: requests sent to other processes (the Ray fleet's shares) come from
    # plan.items.RequestLoader, with dicts of their own
    sampling: list[Mapping[str, Any]]
    token_ids: list[list[int]]

    def row(self, seq: int) -> int:
        """The row of position `seq` (KeyError when the plan has no request there)."""
        offset = seq - self.first
        if self.dense and 0 <= offset < len(self.seqs):
            return offset
        at = int(np.searchsorted(self.seqs, seq))
        if at == len(self.seqs) or self.seqs[at] != seq:
            raise KeyError(f"plan position {seq} has no request in the store")
        return at


@dataclass(slots=True)
class RequestMeta:
    """What a result row needs of a request handed out (kept until it finishes)."""

    seq: int
    prompt_sha256: str
    sampling_json: str


class StagedRequests:
    """EngineRequests for plan positions, from the run's staged file (module invariant).

    Same interface as blend.plan.items.RequestLoader: `take` hands out requests and notes
    them in `meta` until `finish`. Close it (or use it as a context manager) when the run ends.
    """

    def __init__(
        self,
        store: Store,
        header: PlanHeader,
        run_id: str,
        chunk_rows: int,
        cached_chunks: int = 8,
    ) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self._cached_chunks = cached_chunks
        self._chunks: OrderedDict[int, _Chunk] = OrderedDict()
        self.meta: dict[str, RequestMeta] = {}  # requests handed out and not yet finished
        path = _stage(store, header, run_id, chunk_rows)
        self._handle = path.open("rb")
        path.unlink()  # readable through the handle until it is closed
        self._file = pq.ParquetFile(self._handle)
        # the first position of each row group (they are written in seq order)
        self._firsts = [
            self._file.metadata.row_group(i).column(0).statistics.min
            for i in range(self._file.metadata.num_row_groups)
        ]

    def __enter__(self) -> StagedRequests:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._chunks.clear()
        self._file.close()
        self._handle.close()

    def take(self, seqs: Sequence[int] | np.ndarray) -> list[EngineRequest]:
        """The requests at these positions, noted in `meta` until `finish` is called."""
        out = []
        meta = self.meta
        chunk, low, high = None, 0, 0  # the chunk of the last position and its seq range
        for seq in seqs.tolist() if isinstance(seqs, np.ndarray) else seqs:
            seq = int(seq)
            if chunk is None or not low <= seq < high:
                chunk, low, high = self._chunk_of(seq)
            row = chunk.row(seq)
            request_id = chunk.request_id[row]
            meta[request_id] = RequestMeta(seq, chunk.prompt_sha256[row], chunk.sampling_json[row])
            out.append(EngineRequest(request_id, chunk.token_ids[row], chunk.sampling[row]))
        return out

    def finish(self, request_id: str) -> RequestMeta:
        return self.meta.pop(request_id)

    def _chunk_of(self, seq: int) -> tuple[_Chunk, int, int]:
        """The chunk that holds position `seq`, and the positions it spans [low, high)."""
        index = bisect.bisect_right(self._firsts, seq) - 1
        if index < 0:
            raise KeyError(f"plan position {seq} has no request in the store")
        chunk = self._chunks.get(index)
        if chunk is None:
            chunk = self._read(index)
            self._chunks[index] = chunk
            while len(self._chunks) > self._cached_chunks:
                self._chunks.popitem(last=False)
        else:
            self._chunks.move_to_end(index)
        return chunk, chunk.first, int(chunk.seqs[-1]) + 1

    def _read(self, index: int) -> _Chunk:
        table = self._file.read_row_group(index, columns=list(_COLUMNS))
        seqs = table["seq"].to_numpy()
        first = int(seqs[0])
        sampling_json = table["sampling_json"].to_pylist()
        parsed = {text: MappingProxyType(orjson.loads(text)) for text in set(sampling_json)}
        return _Chunk(
            seqs=seqs,
            first=first,
            dense=int(seqs[-1]) - first == len(seqs) - 1,
            request_id=table["request_id"].to_pylist(),
            prompt_sha256=table["prompt_sha256"].to_pylist(),
            sampling_json=sampling_json,
            sampling=[parsed[text] for text in sampling_json],
            token_ids=table["token_ids"].to_pylist(),
        )


def _stage(store: Store, header: PlanHeader, run_id: str, chunk_rows: int) -> Path:
    """Write the plan's requests in seq order to a fresh scratch file; its path."""
    folder = store.tmp_dir
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"{STAGING_PREFIX}{run_id}-*"):  # this run's, killed while staging
        stale.unlink(missing_ok=True)  # (the caller holds the run's lock: none is in use)
    path = folder / f"{STAGING_PREFIX}{run_id}-{uuid.uuid4().hex[:8]}"
    params = {
        "plan_id": header.plan_id,
        "dataset": header.dataset,
        "snapshot": header.snapshot,
        "tokenizer_sha256": header.tokenizer_sha256,
    }
    try:
        with store.connect(views=False) as con, memory_capped(con, STAGING_MEMORY_BYTES):
            reader = con.sql(sql.load("execute/plan_requests"), params=params).to_arrow_reader(
                READ_BATCH_ROWS
            )
            _write_row_groups(reader, path, chunk_rows)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _write_row_groups(reader: pa.RecordBatchReader, path: Path, chunk_rows: int) -> None:
    """The reader's rows, one row group per `chunk_rows` rows (the last may hold fewer)."""
    pending: list[pa.RecordBatch] = []
    n_pending = 0
    with pq.ParquetWriter(path, reader.schema, compression="lz4") as writer:
        for batch in reader:
            pending.append(batch)
            n_pending += batch.num_rows
            while n_pending >= chunk_rows:
                table = pa.Table.from_batches(pending, reader.schema)
                writer.write_table(table.slice(0, chunk_rows), row_group_size=chunk_rows)
                rest = table.slice(chunk_rows)
                pending, n_pending = rest.to_batches(), rest.num_rows
        if n_pending:
            writer.write_table(pa.Table.from_batches(pending, reader.schema))
