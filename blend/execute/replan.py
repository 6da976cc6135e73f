"""Re-plan a run once its warm-up has run: measured lengths in, a revised order out, stored.

Invariant: a run re-plans at most once, and what it chose is stored (run_orders, and runs.
replan_json) before any request of the revised order is handed to the engine; a resumed run
reads the stored revision and never re-plans, so every request is planned, and run, once.
The revision orders the plan items that were not done, outside the warm-up, with estimates
from the warm-up's lengths (read from the run's Parquet parts with SQL; requests still
running count as lower bounds), the model's earlier results of the dataset, and max_tokens.
The items are columns, their prompts sorted in bounded memory like the plan stage's
(plan/sorted_requests.py): no token id is held but the settings search's sample's.
With `search_settings`, the engine settings are searched in simulation on those estimates,
and the engine is restarted with the best ones when the simulated gain exceeds twice what a
restart costs (the engine's measured start time).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from blend.cost.model import CostModel
from blend.cost.resolve import resolve_cost
from blend.engines.settings import EngineSettings, SettingsSource, memory_centric_seqs
from blend.plan.items import PlanHeader, PlanItems
from blend.plan.sorted_requests import (
    REPLAN_ROWS,
    SortedRequests,
    SortSource,
    read_sorted_requests,
)
from blend.plan.stage import PLAN_DUCKDB_MEMORY_BYTES
from blend.planners import (
    EstimateSource,
    OutputEstimates,
    estimate_outputs,
    make_planner,
)
from blend.planners.base import AdmissionKind
from blend.planners.estimates import HintColumns
from blend.planners.history import HISTORY_LIMIT
from blend.planners.prompt_tokens import PlanRequests, PromptTokens
from blend.planners.tree import adjacent_lcp
from blend.simulate.settings_search import FeedChoice, PlanSearch, SearchInputs, guard_order
from blend.store import sql
from blend.store.database import Store, fetch_arrow, fetch_dicts, transaction
from blend.store.memory import memory_capped

RESTART_GAIN_FACTOR = 2.0  # restart for new settings when the gain exceeds this x the start


@dataclass(frozen=True, slots=True)
class SearchSummary:
    """What the settings search predicted (simulated on the estimates), or why it did not
    run (`note`)."""

    trials: list[dict[str, object]] = field(default_factory=list)  # PlanSearch.to_json()
    n_simulated: int = 0  # requests each candidate simulated
    predicted_makespan_s: float | None = None  # the best candidate's
    predicted_gain_s: float | None = None  # over the running settings and the plan's feed
    restart_cost_s: float | None = None  # the engine's measured start
    restart: bool = False
    note: str | None = None  # set when no search ran

    def to_json(self) -> dict[str, object]:
        if self.note is not None:
            return {"note": self.note}
        return {
            "trials": self.trials,
            "n_simulated": self.n_simulated,
            "predicted_makespan_s": self.predicted_makespan_s,
            "predicted_gain_s": self.predicted_gain_s,
            "restart_cost_s": self.restart_cost_s,
            "restart": self.restart,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SearchSummary:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class ReplanReport:
    """What the re-plan after the warm-up measured and chose (stored as runs.replan_json)."""

    replanned_s: float  # wall time of the re-plan, search included
    warmup_finished: int  # warm-up requests measured
    warmup_running: int  # ... still running (their lengths so far are lower bounds)
    n_replanned: int  # requests in the revised order
    estimate_sources: dict[str, int]  # how many estimates came from each source
    admission: AdmissionKind
    feed: str  # FeedChoice.label()
    pace: bool  # the dual scan paces its compute-heavy side
    settings_search: SearchSummary | None  # None: searching was turned off
    restart_settings: EngineSettings | None  # the engine restarted with these (None: kept)

    def to_json(self) -> dict[str, object]:
        restart = self.restart_settings
        return {
            "replanned_s": self.replanned_s,
            "warmup_finished": self.warmup_finished,
            "warmup_running": self.warmup_running,
            "n_replanned": self.n_replanned,
            "estimate_sources": self.estimate_sources,
            "admission": self.admission.value,
            "feed": self.feed,
            "pace": self.pace,
            "settings_search": None
            if self.settings_search is None
            else self.settings_search.to_json(),
            "restart_settings": None
            if restart is None
            else {
                "max_num_batched_tokens": restart.max_num_batched_tokens,
                "max_num_seqs": restart.max_num_seqs,
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplanReport:
        """A stored report (runs.replan_json); reports stored before `pace` was one pace."""
        search = data.get("settings_search")
        restart = data.get("restart_settings")
        return cls(
            replanned_s=float(data["replanned_s"]),
            warmup_finished=int(data["warmup_finished"]),
            warmup_running=int(data["warmup_running"]),
            n_replanned=int(data["n_replanned"]),
            estimate_sources=dict(data.get("estimate_sources") or {}),
            admission=AdmissionKind(data["admission"]),
            feed=str(data.get("feed", "")),
            pace=bool(data.get("pace", True)),
            settings_search=None if search is None else SearchSummary.from_json(search),
            restart_settings=None
            if restart is None
            else EngineSettings(
                restart["max_num_batched_tokens"],
                restart["max_num_seqs"],
                source=SettingsSource.SEARCH,
            ),
        )


@dataclass(frozen=True, slots=True)
class Revision:
    """The order a run feeds after its warm-up (plan positions), and how it was chosen."""

    seqs: np.ndarray  # int64 plan positions, in the revised order
    shared_prev: np.ndarray  # float64 tokens shared with the previous one in this order
    est_output_tokens: np.ndarray  # float64
    est_spread: np.ndarray  # float64 std of log length behind each estimate
    admission: AdmissionKind
    settings: EngineSettings | None  # new engine settings (None: keep the running ones)
    report: ReplanReport  # what was measured and chosen (runs.replan_json)
    pace: bool = True  # the dual scan paces its compute-heavy side (the search may turn it off)
    # warm-up requests still running at the re-plan: plan position -> (estimate, spread), for
    # the feed's KV projection (not stored: a resumed run has none running)
    adopted: dict[int, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReplanContext:
    """What a re-plan needs to know of the run."""

    store: Store
    header: PlanHeader
    items: PlanItems
    run_id: str
    parts_glob: str  # the run's finished parts
    model_sha256: str
    model_dir: Path  # the model folder (its config gives the cost model if none is named)
    tensor_parallel_size: int  # GPUs the engine spans (priced: blend/cost/parallel.py)
    gpu_memory_utilization: float | None  # share of each GPU's memory vLLM took (None: 0.9)
    max_model_len: int  # the engine's context (tokens; 0: not known): longer prompts no work
    running: EngineSettings  # the engine's settings now
    kv_capacity_tokens: int  # the engine's KV cache (tokens)
    block_size: int  # tokens per KV block
    engine_start_s: float  # what a restart costs (s)


def replan_after_warmup(
    ctx: ReplanContext, pending: np.ndarray, running: Mapping[int, int]
) -> Revision:
    """Re-plan the pending (not done) positions outside the warm-up and store the result.

    `running`: warm-up positions still in the engine and their output tokens so far.
    """
    revision, estimates, order = _revise(ctx, pending, running, time.perf_counter())
    # stored once the re-plan's own arrays are gone: at 10M prompts they and the insert's
    # copy together held ~1 GB more than either
    _store(ctx, revision, ctx.items.request_id, estimates, order)
    return revision


def _revise(
    ctx: ReplanContext, pending: np.ndarray, running: Mapping[int, int], started: float
) -> tuple[Revision, OutputEstimates, np.ndarray]:
    """The revision, the estimates of the re-planned positions (in `rest` order) and their
    order (indices into them)."""
    header, items = ctx.header, ctx.items
    rest, refused = _runnable(np.flatnonzero(pending & ~items.is_warmup), items, ctx)
    running_seqs = np.asarray(sorted(running), dtype=np.int64)
    every, estimates, adopted, n_measured = _estimate(ctx, rest, running, running_seqs)
    cost = resolve_cost(
        header.model_spec,
        header.hardware,
        ctx.model_dir,
        ctx.tensor_parallel_size,
        ctx.gpu_memory_utilization,
    )
    order, admission = _order(header, every, estimates, cost, rest)
    prompts = every.prompts.subset(rest[order])
    max_tokens = every.max_tokens[rest[order]]
    informed = any(source is not EstimateSource.MAX_TOKENS for source in estimates.source)
    inputs = SearchInputs(
        prompts,
        estimates.tokens[order],
        estimates.spread[order],
        max_tokens,
        admission,
        residuals=estimates.residuals,
        guessed=estimates.guessed[order],
    )
    settings, feed, search = _settings(ctx, inputs, cost, informed)
    guarded = guard_order(feed, prompts, estimates.tokens[order])
    if guarded is not None:  # a guard: the same requests in its order, fed in order
        order = order[guarded]
        prompts = every.prompts.subset(rest[order])
    admission = feed.admission
    # the prompts the engine refuses last, as no work: their error rows are all they give
    seqs = np.concatenate((rest[order], refused))
    none = np.zeros(len(refused))
    ordered_estimates = np.concatenate((estimates.tokens[order], none))
    ordered_spread = np.concatenate((estimates.spread[order], none))
    shared = np.concatenate(
        (adjacent_lcp(prompts, np.arange(len(prompts))).astype(np.float64), none)
    )
    report = ReplanReport(
        replanned_s=time.perf_counter() - started,
        warmup_finished=n_measured,
        warmup_running=len(running),
        n_replanned=len(seqs),
        estimate_sources=estimates.source_counts(),
        admission=admission,
        feed=feed.label(),
        pace=feed.pace,
        settings_search=search,
        restart_settings=settings,
    )
    revision = Revision(
        seqs,
        shared,
        ordered_estimates,
        ordered_spread,
        admission,
        settings,
        report,
        feed.pace,
        adopted,
    )
    return revision, estimates, order


def _estimate(
    ctx: ReplanContext, rest: np.ndarray, running: Mapping[int, int], running_seqs: np.ndarray
) -> tuple[PlanRequests, OutputEstimates, dict[int, tuple[float, float]], int]:
    """Every plan item as columns (by seq), the estimates of `rest`, those of the warm-up
    requests still running (seq -> (estimate, spread): the feed adopts them), and how many
    warm-up lengths were measured. The hints and the estimates' inputs go when it returns."""
    measured = _measured_lengths(ctx)
    asked = np.concatenate((rest, running_seqs))
    read = _read_items(ctx, asked)
    hints = _hints(read, ctx.items, measured, running, running_seqs)
    # the warm-up requests still running are estimated with the rest
    both = estimate_outputs(read.requests.subset(asked), hints)
    adopted = {
        seq: (float(both.tokens[len(rest) + i]), float(both.spread[len(rest) + i]))
        for i, seq in enumerate(running_seqs.tolist())
    }
    return read.requests, both.subset(np.arange(len(rest))), adopted, len(measured)


def _runnable(
    rest: np.ndarray, items: PlanItems, ctx: ReplanContext
) -> tuple[np.ndarray, np.ndarray]:
    """`rest` split into the positions the engine can run and those whose prompt leaves no
    room for one output token within its context (plan/over_length.py)."""
    if ctx.max_model_len <= 0:
        return rest, rest[:0]
    fits = items.prompt_tokens[rest] < ctx.max_model_len
    return rest[fits], rest[~fits]


def load_revision(ctx: ReplanContext) -> Revision | None:
    """The run's stored revision, if it re-planned already (settings are not restored: the
    engine of a resumed run starts with them, see execute/setup.py)."""
    with ctx.store.connect(views=False) as con:
        record = fetch_dicts(con, sql.load("execute/run_replan"), {"run_id": ctx.run_id})
        if not record or record[0]["replan_json"] is None:
            return None
        table = fetch_arrow(con, sql.load("execute/run_order"), {"run_id": ctx.run_id})
    report = ReplanReport.from_json(orjson.loads(record[0]["replan_json"]))
    return Revision(
        seqs=table["plan_seq"].to_numpy().astype(np.int64),
        shared_prev=table["shared_prev"].fill_null(0).to_numpy().astype(np.float64),
        est_output_tokens=table["est_output_tokens"].fill_null(0).to_numpy().astype(np.float64),
        est_spread=table["est_spread"].fill_null(0).to_numpy().astype(np.float64),
        admission=report.admission,
        settings=None,
        report=report,
        pace=report.pace,
    )


def stored_settings(store: Store, run_id: str) -> EngineSettings | None:
    """The settings a run's re-plan restarted its engine with, if it did."""
    with store.connect(views=False) as con:
        record = fetch_dicts(con, sql.load("execute/run_replan"), {"run_id": run_id})
    if not record or record[0]["replan_json"] is None:
        return None
    return ReplanReport.from_json(orjson.loads(record[0]["replan_json"])).restart_settings


def _measured_lengths(ctx: ReplanContext) -> dict[str, int]:
    """Output lengths of the warm-up's completions, read from the run's parts."""
    with ctx.store.connect(views=False) as con:
        try:
            rows = fetch_arrow(con, sql.load("execute/part_lengths"), {"glob": ctx.parts_glob})
        except Exception as exc:  # no part yet
            if "No files found" not in str(exc):
                raise
            return {}
    warm_ids = set(ctx.items.request_id.filter(pa.array(ctx.items.is_warmup)).to_pylist())
    return {
        rid: int(n)
        for rid, n in zip(
            rows["request_id"].to_pylist(), rows["n_output_tokens"].to_pylist(), strict=True
        )
        if rid in warm_ids
    }


def _read_items(ctx: ReplanContext, asked: np.ndarray) -> SortedRequests:
    """Every plan item as columns (by seq; own lengths from the model's earlier results when
    the plan uses history) and the history hints of the `asked` positions, sorted together."""
    h = ctx.header
    key = {"dataset": h.dataset, "snapshot": h.snapshot, "tokenizer_sha256": h.tokenizer_sha256}
    use_history = h.params.get("options", {}).get("use_history", True)
    source = SortSource(
        "execute/replan_columns",
        "execute/replan_hints",
        REPLAN_ROWS,
        {
            **key,
            "plan_id": h.plan_id,
            "history_model_sha256": ctx.model_sha256 if use_history else None,
            "limit": HISTORY_LIMIT,
        },
        {**key, "plan_id": h.plan_id},
        key,
    )
    # DuckDB capped as in the plan stage: the engine's process holds the model beside it
    with ctx.store.connect() as con, memory_capped(con, PLAN_DUCKDB_MEMORY_BYTES):
        con.register("replan_seqs", pa.table({"seq": pa.array(asked, pa.int64())}))
        try:
            return read_sorted_requests(con, ctx.store, source)
        finally:
            con.unregister("replan_seqs")


def _hints(
    read: SortedRequests,
    items: PlanItems,
    measured: Mapping[str, int],
    running: Mapping[int, int],
    running_seqs: np.ndarray,
) -> HintColumns:
    """The history hints, then the warm-up's lengths: finished ones (in `measured`'s order),
    and lower bounds of those still running (by seq), over the items' sorted prompts."""
    history = read.hints
    warm = np.flatnonzero(items.is_warmup)
    warm_ids = items.request_id.take(pa.array(warm))
    found = pc.index_in(pa.array(list(measured), pa.string()), value_set=warm_ids)
    measured_seqs = warm[found.to_numpy(zero_copy_only=False).astype(np.int64)]
    _, history_roots = history.prompts.root()
    prompts = read.root.subset(np.concatenate((history_roots, measured_seqs, running_seqs)))
    n_history, n_measured, n_running = len(history), len(measured_seqs), len(running_seqs)
    generated = np.asarray([running[s] for s in running_seqs.tolist()], dtype=np.int64)
    return HintColumns(
        prompts=prompts,
        output_len=np.concatenate(
            (
                history.output_len,
                np.fromiter(measured.values(), np.int64, n_measured),
                np.maximum(1, generated),
            )
        ),
        warmup=np.concatenate((history.warmup, np.ones(n_measured + n_running, dtype=bool))),
        censored=np.concatenate(
            (np.zeros(n_history + n_measured, dtype=bool), np.ones(n_running, dtype=bool))
        ),
        max_tokens=np.concatenate(
            (
                history.max_tokens,
                np.full(n_measured, -1, dtype=np.int64),
                read.requests.max_tokens[running_seqs],
            )
        ),
    )


def _order(
    header: PlanHeader,
    every: PlanRequests,
    estimates: OutputEstimates,
    cost: CostModel,
    rest: np.ndarray,
) -> tuple[np.ndarray, AdmissionKind]:
    """Indices into `rest` in the revised order, and how to feed them (`every`: every plan
    item by seq; `estimates`: those of `rest`)."""
    if not header.replan_after_warmup:  # the planner reads no lengths: keep its order
        return np.arange(len(rest)), header.admission
    options = header.params.get("options", {})
    planner = make_planner(
        header.planner,
        seed=options.get("seed", 0),
        batch_size=options.get("batch_size", 256),
        cost=cost,
    )
    plan = planner.plan(every.subset(rest), estimates)  # only a planner that re-plans
    return np.asarray(plan.order, dtype=np.int64), plan.admission


def _settings(
    ctx: ReplanContext, inputs: SearchInputs, cost: CostModel, informed: bool
) -> tuple[EngineSettings | None, FeedChoice, SearchSummary | None]:
    """How to feed the re-planned requests, and new engine settings when the search finds
    ones worth a restart (else None). No search without a measured length: estimates that
    are all max_tokens say nothing the defaults do not."""
    own = FeedChoice(inputs.admission)
    if not ctx.header.search_settings or not inputs.prompts:
        return None, own, None
    if not informed:
        return (
            None,
            own,
            SearchSummary(note="estimates are only max_tokens: no search, settings kept"),
        )
    from blend.simulate.settings_search import search_plan
    from blend.simulate.types import SimConfig

    estimates = inputs.estimates
    lengths = _lengths(inputs.prompts)
    footprint = float(lengths.mean() + estimates.mean() / 2.0)
    longest = int(lengths.max()) + int(inputs.max_tokens.max()) + 1
    max_model_len = max(ctx.running.max_num_batched_tokens, longest)
    template = SimConfig(kv_capacity_tokens=ctx.kv_capacity_tokens, block_size=ctx.block_size)
    search = search_plan(
        inputs,
        cost,
        ctx.running,
        template,
        memory_centric=memory_centric_seqs(ctx.kv_capacity_tokens, footprint),
        max_model_len=max_model_len,
    )
    current = search.trials[0]  # the running settings, the plan's own feed
    best = search.best
    gain_s = current.makespan_s - best.makespan_s
    new_settings = best.settings != current.settings
    restart = new_settings and gain_s > RESTART_GAIN_FACTOR * ctx.engine_start_s
    # without a restart, the best feed at the running settings
    feed = best.feed if restart or not new_settings else _best_feed_at(search, current.settings)
    summary = SearchSummary(
        trials=search.to_json(),
        n_simulated=search.n_simulated,
        predicted_makespan_s=best.makespan_s,
        predicted_gain_s=gain_s,
        restart_cost_s=ctx.engine_start_s,
        restart=restart,
    )
    return (best.settings if restart else None), feed, summary


def _lengths(prompts: object) -> np.ndarray:
    """Prompt lengths (tokens): kept by a PromptTokens (no prompt read), else counted."""
    if isinstance(prompts, PromptTokens):
        return prompts.lengths
    return np.fromiter((len(p) for p in prompts), np.int64)  # type: ignore[attr-defined]


def _best_feed_at(search: PlanSearch, settings: EngineSettings) -> FeedChoice:
    at = [t for t in search.trials if t.settings == settings]
    return min(at, key=lambda t: t.makespan_s).feed


def _store(
    ctx: ReplanContext,
    revision: Revision,
    ids: pa.Array,
    estimates: OutputEstimates,
    order: np.ndarray,
) -> None:
    n = len(revision.seqs)
    n_refused = n - len(order)  # the refused prompts at the end: no estimate

    def with_refused(column: pa.DictionaryArray) -> pa.DictionaryArray:
        # kept dictionary-encoded (DuckDB casts on insert): a string a position took ~1 GB at
        # 10M, beside DuckDB's copy
        codes = pa.concat_arrays([column.indices, pa.nulls(n_refused, column.indices.type)])
        return pa.DictionaryArray.from_arrays(codes, column.dictionary)

    table = pa.table(
        {
            "seq": pa.array(np.arange(n), pa.int64()),
            "plan_seq": pa.array(revision.seqs, pa.int64()),
            "request_id": ids.take(pa.array(revision.seqs)).cast(pa.string()),
            "shared_prev": pa.array(revision.shared_prev.astype(np.int64), pa.int64()),
            "est_output_tokens": pa.array(revision.est_output_tokens, pa.float64()),
            "est_spread": pa.array(revision.est_spread, pa.float64()),
            "est_source": with_refused(estimates.source.dictionary(order)),
            "prefix_group": with_refused(estimates.group_key.dictionary(order)),
        }
    )
    replan_json = orjson.dumps(
        revision.report.to_json(), option=orjson.OPT_SERIALIZE_NUMPY
    ).decode()
    # capped: DuckDB holds the uncommitted rows (10M at 10M prompts) and spills past the cap
    with (
        ctx.store.connect(views=False) as con,
        memory_capped(con, PLAN_DUCKDB_MEMORY_BYTES, return_freed=True),
        transaction(con),
    ):
        con.register("new_run_order", table)
        con.execute(sql.load("execute/insert_run_order"), {"run_id": ctx.run_id})
        con.unregister("new_run_order")
        con.execute(
            sql.load("execute/record_replan"), {"run_id": ctx.run_id, "replan_json": replan_json}
        )
