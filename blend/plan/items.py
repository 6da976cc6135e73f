"""A stored plan's items as the executor needs them: numbers by seq, requests by chunk.

Invariant: PlanItems holds what admission decides from (prompt tokens, shared prefix,
estimated output, side) for every plan position, in seq order, in numpy arrays; token ids and
sampling are read from DuckDB only for the positions being handed to the engine, a chunk of
positions at a time (a plan of millions of prompts never sits in memory as Python objects).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from blend.engines.base import EngineRequest
from blend.engines.settings import EngineSettings, SettingsSource
from blend.planners.base import AdmissionKind, PlannerName
from blend.store import sql
from blend.store.database import Store, fetch_arrow


@dataclass(frozen=True, slots=True)
class PlanHeader:
    """The plans row of one plan (what the executor reads of it)."""

    plan_id: str
    dataset: str
    snapshot: int
    planner: PlannerName
    model_spec: str | None
    hardware: str | None
    tokenizer_sha256: str
    n_requests: int
    params_json: str
    admission: AdmissionKind
    settings: EngineSettings | None  # what the run starts with (None: older plans name none)
    n_warmup: int
    replan_after_warmup: bool
    search_settings: bool

    @classmethod
    def from_row(cls, row: dict) -> PlanHeader:
        return cls(
            plan_id=row["plan_id"],
            dataset=row["dataset"],
            snapshot=row["snapshot"],
            planner=PlannerName(row["planner"]),
            model_spec=row["model_spec"],
            hardware=row["hardware"],
            tokenizer_sha256=row["tokenizer_sha256"],
            n_requests=row["n_requests"],
            params_json=row["params_json"],
            # plans made before admission existed were fed in order
            admission=AdmissionKind(row["admission"] or AdmissionKind.IN_ORDER),
            settings=plan_row_settings(row),
            n_warmup=row["n_warmup"] or 0,
            replan_after_warmup=bool(row["replan_after_warmup"]),
            search_settings=bool(row["search_settings"]),
        )

    @property
    def params(self) -> dict:
        return orjson.loads(self.params_json) if self.params_json else {}

    @property
    def tensor_parallel_size(self) -> int:
        """GPUs per engine the plan was priced for (1 for plans made before it was an
        option)."""
        return int(self.params.get("options", {}).get("tensor_parallel_size", 1))

    @property
    def gpu_memory_utilization(self) -> float | None:
        """The share of each GPU's memory the plan gave vLLM (None: vLLM's default, and
        plans made before it was priced)."""
        value = self.params.get("options", {}).get("gpu_memory_utilization")
        return None if value is None else float(value)

    @property
    def max_model_len(self) -> int | None:
        """The context the plan was made for, as the user gave it (None: the model's)."""
        value = self.params.get("options", {}).get("max_model_len")
        return None if value is None else int(value)


def plan_row_settings(row: dict) -> EngineSettings | None:
    """The engine settings a plans row names (its budget columns and their source), or None
    for plans made before settings were part of plans."""
    if not (row["max_num_batched_tokens"] and row["max_num_seqs"]):
        return None
    return EngineSettings(
        int(row["max_num_batched_tokens"]),
        int(row["max_num_seqs"]),
        source=SettingsSource(row["settings_source"] or SettingsSource.VLLM_DEFAULT),
    )


class PlanNotFoundError(LookupError):
    """The store holds no plan of that id; the message says what to run."""


def read_plan_header(store: Store, plan_id: str) -> PlanHeader:
    """The header of plan `plan_id`, else PlanNotFoundError. Cheap (one row, no engine, no
    model): the CLI checks a plan id with it before building anything."""
    with store.connect(views=False) as con:
        rows = fetch_arrow(con, sql.load("execute/plan_header"), {"plan_id": plan_id}).to_pylist()
    if not rows:
        raise PlanNotFoundError(f"no plan {plan_id!r} in {store.db_path}: run `blend plan` first")
    return PlanHeader.from_row(rows[0])


@dataclass(frozen=True, slots=True)
class PlanItems:
    """Per plan position (seq): arrays of what admission needs."""

    request_id: pa.StringArray
    # int32 whole tokens (half the memory of float64 over a 10M plan, held through its
    # re-plan); admission's sequences take them as float64 (prompt_tokens_at,
    # filtered_shared_prev)
    prompt_tokens: np.ndarray
    shared_prev: np.ndarray  # int32 tokens shared with the previous position
    est_output_tokens: np.ndarray  # float64 (max_tokens-free plans made before estimates: 0)
    est_spread: np.ndarray  # float64 std of log length behind each estimate (0: a point)
    is_warmup: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.request_id)

    @classmethod
    def load(cls, store: Store, plan_id: str) -> PlanItems:
        with store.connect(views=False) as con:
            table = fetch_arrow(con, sql.load("execute/plan_items"), {"plan_id": plan_id})

        def numbers(name: str) -> np.ndarray:
            return table[name].fill_null(0).to_numpy().astype(np.float64)

        def tokens(name: str) -> np.ndarray:
            return table[name].fill_null(0).to_numpy().astype(np.int32)

        return cls(
            request_id=table["request_id"].combine_chunks(),
            prompt_tokens=tokens("prompt_tokens"),
            shared_prev=tokens("shared_prev"),
            est_output_tokens=numbers("est_output_tokens"),
            est_spread=numbers("est_spread"),
            is_warmup=pc.equal(table["side"], "W").fill_null(False).to_numpy(),
        )

    def seqs_of(self, request_ids: Sequence[str] | set[str]) -> np.ndarray:
        """Positions of these request ids (those in the plan), ascending."""
        if not request_ids:
            return np.zeros(0, dtype=np.int64)
        mask = pc.is_in(self.request_id, value_set=pa.array(list(request_ids), pa.string()))
        return np.flatnonzero(mask.to_numpy(zero_copy_only=False))

    def prompt_tokens_at(self, seqs: np.ndarray) -> np.ndarray:
        """Prompt tokens of these positions as float64 (what admission's sequences take)."""
        return self.prompt_tokens[seqs].astype(np.float64)

    def filtered_shared_prev(self, seqs: np.ndarray) -> np.ndarray:
        """Shared prefix of each of `seqs` (ascending) with the one before it among `seqs`
        (see shared_across_gaps)."""
        return shared_across_gaps(self.shared_prev, seqs)


def shared_across_gaps(shared_prev: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """For positions `kept` (ascending) of a sequence whose shared_prev[k] is the prefix
    position k shares with k - 1: the prefix each kept one shares with the kept one before it,
    bounded below by the smallest shared_prev in between (exact for depth-first orders)."""
    if len(kept) == 0:
        return np.zeros(0)
    out = np.zeros(len(kept))
    if len(kept) > 1:  # the minimum over each gap (kept[k - 1], kept[k]], all at once
        first = int(kept[0]) + 1
        span = np.asarray(shared_prev[first : int(kept[-1]) + 1], dtype=np.float64)
        out[1:] = np.minimum.reduceat(span, np.asarray(kept[:-1]) + 1 - first)
    return out


@dataclass(frozen=True, slots=True)
class RequestMeta:
    seq: int
    prompt_sha256: str
    sampling_json: str


class RequestLoader:
    """EngineRequests for plan positions, read from DuckDB `chunk_rows` positions at a time."""

    def __init__(
        self, store: Store, header: PlanHeader, chunk_rows: int, cached_chunks: int = 8
    ) -> None:
        self._store, self._header, self._chunk_rows = store, header, chunk_rows
        self._cached_chunks = cached_chunks
        self._chunks: OrderedDict[int, dict[int, dict]] = OrderedDict()
        self.meta: dict[str, RequestMeta] = {}  # requests handed out and not yet finished

    def take(self, seqs: Sequence[int]) -> list[EngineRequest]:
        """The requests at these positions, noted in `meta` until `finish` is called."""
        out = []
        for seq in seqs:
            row = self._row(int(seq))
            self.meta[row["request_id"]] = RequestMeta(
                seq=row["seq"],
                prompt_sha256=row["prompt_sha256"],
                sampling_json=row["sampling_json"],
            )
            out.append(
                EngineRequest(
                    request_id=row["request_id"],
                    prompt_token_ids=row["token_ids"],
                    sampling=orjson.loads(row["sampling_json"]),
                )
            )
        return out

    def finish(self, request_id: str) -> RequestMeta:
        return self.meta.pop(request_id)

    def _row(self, seq: int) -> dict:
        chunk = seq // self._chunk_rows
        rows = self._chunks.get(chunk)
        if rows is None:
            rows = self._load(chunk)
            self._chunks[chunk] = rows
            while len(self._chunks) > self._cached_chunks:
                self._chunks.popitem(last=False)
        else:
            self._chunks.move_to_end(chunk)
        return rows[seq]

    def _load(self, chunk: int) -> dict[int, dict]:
        h = self._header
        start = chunk * self._chunk_rows
        with self._store.connect(views=False) as con:
            rows = fetch_arrow(
                con,
                sql.load("execute/plan_chunk"),
                {
                    "plan_id": h.plan_id,
                    "dataset": h.dataset,
                    "snapshot": h.snapshot,
                    "tokenizer_sha256": h.tokenizer_sha256,
                    "seq_start": start,
                    "seq_end": start + self._chunk_rows,
                },
            ).to_pylist()
        return {row["seq"]: row for row in rows}
