"""Re-plan a run once its warm-up has run: measured lengths in, a revised order out, stored.

Invariant: a run re-plans at most once, and what it chose is stored (run_orders, and runs.
replan_json) before any request of the revised order is handed to the engine; a resumed run
reads the stored revision and never re-plans, so every request is planned, and run, once.
The revision orders the plan items that were not done, outside the warm-up, with estimates
from the warm-up's lengths (read from the run's Parquet parts with SQL; requests still
running count as lower bounds), the model's earlier results of the dataset, and max_tokens.
With `search_settings`, the engine settings are searched in simulation on those estimates,
and the engine is restarted with the best ones when the simulated gain exceeds twice what a
restart costs (the engine's measured start time).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from blend import sql
from blend.admission.base import AdmissionKind
from blend.cost import CostModel, resolve_cost
from blend.engine_settings import (
    EngineSettings,
    SettingsSource,
    candidate_settings,
    memory_centric_seqs,
)
from blend.plan import HISTORY_LIMIT, requests_with_history
from blend.plan_items import PlanHeader, PlanItems
from blend.planners import (
    EstimateSource,
    LengthHint,
    OutputEstimates,
    estimate_outputs,
    make_planner,
)
from blend.store import Store, fetch_arrow, fetch_dicts, transaction
from blend.tree import adjacent_lcp

RESTART_GAIN_FACTOR = 2.0  # restart for new settings when the gain exceeds this x the start


@dataclass(frozen=True, slots=True)
class Revision:
    """The order a run feeds after its warm-up (plan positions), and how it was chosen."""

    seqs: np.ndarray  # int64 plan positions, in the revised order
    shared_prev: np.ndarray  # float64 tokens shared with the previous one in this order
    est_output_tokens: np.ndarray  # float64
    est_spread: np.ndarray  # float64 std of log length behind each estimate
    admission: AdmissionKind
    settings: EngineSettings | None  # new engine settings (None: keep the running ones)
    report: dict = field(default_factory=dict)  # what was measured and chosen (replan_json)


@dataclass(frozen=True, slots=True)
class ReplanContext:
    """What a re-plan needs to know of the run."""

    store: Store
    header: PlanHeader
    items: PlanItems
    run_id: str
    parts_glob: str  # the run's finished parts
    model_sha256: str
    model_dir: object  # Path of the model (its config gives the cost model if none is named)
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
    started = time.perf_counter()
    header, items = ctx.header, ctx.items
    rest = np.flatnonzero(pending & ~items.is_warmup)
    measured = _measured_lengths(ctx)
    ids = items.request_id.to_pylist()
    rest_ids = [ids[s] for s in rest.tolist()]
    rows, history = _requests(ctx, set(rest_ids) | set(measured) | {ids[s] for s in running})
    requests, hints = requests_with_history([rows[r] for r in rest_ids], history)
    hints += _warmup_hints(ids, rows, measured, running)
    estimates = estimate_outputs(requests, hints)
    cost = resolve_cost(header.model_spec, header.hardware, ctx.model_dir)  # type: ignore[arg-type]
    order, admission = _order(header, requests, estimates, cost, rest)
    seqs = rest[order]
    ordered_estimates = estimates.tokens[order]
    ordered_spread = estimates.spread[order]
    prompts = [rows[ids[s]]["token_ids"] for s in seqs.tolist()]
    shared = adjacent_lcp(prompts, np.arange(len(prompts))).astype(np.float64)
    settings, search = _settings(ctx, prompts, ordered_estimates, ordered_spread, admission, cost)
    report = {
        "replanned_s": time.perf_counter() - started,
        "warmup_finished": len(measured),
        "warmup_running": len(running),
        "n_replanned": len(seqs),
        "estimate_sources": estimates.source_counts(),
        "admission": admission.value,
        "settings_search": search,
        "restart_settings": None
        if settings is None
        else {
            "max_num_batched_tokens": settings.max_num_batched_tokens,
            "max_num_seqs": settings.max_num_seqs,
        },
    }
    revision = Revision(
        seqs, shared, ordered_estimates, ordered_spread, admission, settings, report
    )
    _store(ctx, revision, ids, [estimates.source[i] for i in order.tolist()], estimates, order)
    return revision


def load_revision(ctx: ReplanContext) -> Revision | None:
    """The run's stored revision, if it re-planned already (settings are not restored: the
    engine of a resumed run starts with them, see execute.py)."""
    with ctx.store.connect(views=False) as con:
        record = fetch_dicts(con, sql.load("execute/run_replan"), {"run_id": ctx.run_id})
        if not record or record[0]["replan_json"] is None:
            return None
        table = fetch_arrow(con, sql.load("execute/run_order"), {"run_id": ctx.run_id})
    report = orjson.loads(record[0]["replan_json"])
    return Revision(
        seqs=table["plan_seq"].to_numpy().astype(np.int64),
        shared_prev=table["shared_prev"].fill_null(0).to_numpy().astype(np.float64),
        est_output_tokens=table["est_output_tokens"].fill_null(0).to_numpy().astype(np.float64),
        est_spread=table["est_spread"].fill_null(0).to_numpy().astype(np.float64),
        admission=AdmissionKind(report["admission"]),
        settings=None,
        report=report,
    )


def stored_settings(store: Store, run_id: str) -> EngineSettings | None:
    """The settings a run's re-plan restarted its engine with, if it did."""
    with store.connect(views=False) as con:
        record = fetch_dicts(con, sql.load("execute/run_replan"), {"run_id": run_id})
    if not record or record[0]["replan_json"] is None:
        return None
    chosen = orjson.loads(record[0]["replan_json"]).get("restart_settings")
    if not chosen:
        return None
    return EngineSettings(
        max_num_batched_tokens=int(chosen["max_num_batched_tokens"]),
        max_num_seqs=int(chosen["max_num_seqs"]),
        source=SettingsSource.SEARCH,
    )


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


def _requests(ctx: ReplanContext, wanted: set[str]) -> tuple[dict[str, dict], list[dict]]:
    """Rows (token ids, max_tokens, prompt_sha256, sampling_json) of the wanted request ids,
    and the model's earlier results of the dataset (when the plan uses history)."""
    h = ctx.header
    with ctx.store.connect() as con:
        table = fetch_arrow(
            con,
            sql.load("plan/request_tokens"),
            {"dataset": h.dataset, "snapshot": h.snapshot, "tokenizer_sha256": h.tokenizer_sha256},
        )
        history = (
            fetch_arrow(
                con,
                sql.load("plan/history_lengths"),
                {
                    "dataset": h.dataset,
                    "model_sha256": ctx.model_sha256,
                    "tokenizer_sha256": h.tokenizer_sha256,
                    "limit": HISTORY_LIMIT,
                },
            ).to_pylist()
            if h.params.get("options", {}).get("use_history", True)
            else []
        )
    keep = pc.is_in(table["request_id"], value_set=pa.array(sorted(wanted), pa.string()))
    rows = {row["request_id"]: row for row in table.filter(keep).to_pylist()}
    return rows, history


def _warmup_hints(
    ids: list[str],
    rows: Mapping[str, dict],
    measured: Mapping[str, int],
    running: Mapping[int, int],
) -> list[LengthHint]:
    """The warm-up's lengths: finished ones, and lower bounds of those still running."""
    hints = [
        LengthHint(rows[rid]["token_ids"], n, EstimateSource.WARMUP) for rid, n in measured.items()
    ]
    for seq, generated in running.items():
        row = rows[ids[seq]]
        hints.append(
            LengthHint(
                row["token_ids"], max(1, generated), EstimateSource.WARMUP, True, row["max_tokens"]
            )
        )
    return hints


def _order(
    header: PlanHeader,
    requests: list,
    estimates: OutputEstimates,
    cost: CostModel,
    rest: np.ndarray,
) -> tuple[np.ndarray, AdmissionKind]:
    """Indices into `rest` in the revised order, and how to feed them."""
    if not header.replan_after_warmup:  # the planner reads no lengths: keep its order
        return np.arange(len(rest)), AdmissionKind(header.admission)
    options = header.params.get("options", {})
    planner = make_planner(
        header.planner,
        seed=options.get("seed", 0),
        batch_size=options.get("batch_size", 256),
        cost=cost,
    )
    plan = planner.plan(requests, estimates)
    return np.asarray(plan.order, dtype=np.int64), plan.admission


def _settings(
    ctx: ReplanContext,
    prompts: list[list[int]],
    estimates: np.ndarray,
    spread: np.ndarray,
    admission: AdmissionKind,
    cost: CostModel,
) -> tuple[EngineSettings | None, dict | None]:
    """New engine settings when the search finds ones worth a restart (else None)."""
    if not ctx.header.search_settings or not prompts:
        return None, None
    from blend.simulate.settings_search import search_order_settings
    from blend.simulate.types import SimConfig, SimRequest

    requests = [SimRequest(str(i), p, 1) for i, p in enumerate(prompts)]
    footprint = float(np.mean([len(p) for p in prompts]) + estimates.mean() / 2.0)
    max_model_len = max(ctx.running.max_num_batched_tokens, max(len(p) for p in prompts) + 1)
    candidates = candidate_settings(
        ctx.running, max_model_len, memory_centric_seqs(ctx.kv_capacity_tokens, footprint)
    )
    template = SimConfig(kv_capacity_tokens=ctx.kv_capacity_tokens, block_size=ctx.block_size)
    search = search_order_settings(
        requests, estimates, admission, cost, candidates, template, spread=spread
    )
    current = search.makespan_of(candidates[0])
    best = search.best
    gain_s = current - search.makespan_of(best)
    restart = best != candidates[0] and gain_s > RESTART_GAIN_FACTOR * ctx.engine_start_s
    summary = {
        "trials": search.to_json(),
        "predicted_gain_s": gain_s,
        "restart_cost_s": ctx.engine_start_s,
        "restart": restart,
    }
    return (best if restart else None), summary


def _store(
    ctx: ReplanContext,
    revision: Revision,
    ids: list[str],
    sources: list[EstimateSource],
    estimates: OutputEstimates,
    order: np.ndarray,
) -> None:
    n = len(revision.seqs)
    table = pa.table(
        {
            "run_id": pa.array([ctx.run_id] * n, pa.string()),
            "seq": pa.array(np.arange(n), pa.int64()),
            "plan_seq": pa.array(revision.seqs, pa.int64()),
            "request_id": pa.array([ids[s] for s in revision.seqs.tolist()], pa.string()),
            "shared_prev": pa.array(revision.shared_prev.astype(np.int64), pa.int64()),
            "est_output_tokens": pa.array(revision.est_output_tokens, pa.float64()),
            "est_spread": pa.array(revision.est_spread, pa.float64()),
            "est_source": pa.array([s.value for s in sources], pa.string()),
            "prefix_group": pa.array([estimates.group_key[i] for i in order.tolist()], pa.string()),
        }
    )
    replan_json = orjson.dumps(revision.report, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    with ctx.store.connect(views=False) as con, transaction(con):
        con.register("new_run_order", table)
        con.execute(sql.load("execute/insert_run_order"))
        con.unregister("new_run_order")
        con.execute(
            sql.load("execute/record_replan"), {"run_id": ctx.run_id, "replan_json": replan_json}
        )
