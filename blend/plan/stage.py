"""The plan stage: read a profiled snapshot, estimate output lengths, order, store the plan.

A plan is the warm-up sample (side "W", run first to measure output lengths) followed by the
planner's order of the rest, each item with its estimated output length and where that
estimate comes from, plus the engine settings the plan starts with (typed columns of
`plans`). The executor re-plans the rest once the warm-up has run (blend/execute/replan.py).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa

from blend.cost.model import CostModel
from blend.cost.parallel import one_gpu_name
from blend.cost.resolve import resolve_cost
from blend.engines.settings import EngineSettings, SettingsSource, vllm_default_settings
from blend.plan.over_length import context_limit, read_over_length, with_over_length
from blend.plan.sorted_requests import RequestQuery, SortedRequests, read_sorted_requests
from blend.planners import (
    OutputEstimates,
    Plan,
    PlannerName,
    estimate_outputs,
    make_planner,
    planner_name,
    select_warmup,
)
from blend.planners.base import AdmissionKind
from blend.planners.estimates import WARMUP_FRACTION
from blend.planners.history import HISTORY_LIMIT
from blend.planners.prompt_tokens import PlanRequests
from blend.planners.tree import adjacent_lcp, build_compact_trie
from blend.simulate.sequential_bound import EstimatedBounds, estimated_bounds
from blend.store import sql
from blend.store.database import Store, fetch_dicts, transaction
from blend.store.memory import memory_capped
from blend.store.names import NameKind, validate_name

# DuckDB's memory while it reads the requests (bytes): its joins and sorts spill past this;
# the token ids are never held by the plan (plan/sorted_requests.py sorts them in ranges)
PLAN_DUCKDB_MEMORY_BYTES = 1 << 30


class PlanError(Exception):
    """The dataset cannot be planned (not ingested or not profiled)."""


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """How to plan (what the CLI, the flows and the library take)."""

    planner: PlannerName = PlannerName.DFS
    seed: int = 0
    batch_size: int = 256  # plan positions per checkpoint batch
    model_spec: str | None = None  # cost model: a spec name or JSON file (None: the model's)
    hardware: str | None = None  # a hardware spec name or JSON file (None: this machine's)
    warmup_fraction: float = WARMUP_FRACTION  # share of unmeasured requests run first
    engine: EngineSettings | None = None  # explicit settings (None: vLLM's, then searched)
    search_settings: bool = True  # search engine settings once the warm-up has run
    use_history: bool = True  # earlier results of the dataset seed the estimates
    tensor_parallel_size: int = 1  # GPUs one engine spans (priced: blend/cost/parallel.py)
    # vLLM's engine arguments that change the price: the share of each GPU's memory vLLM
    # takes (None: vLLM's default; CostModel.kv_cache_bytes) and the context in tokens (None:
    # the model's; longer prompts are no work: plan/over_length.py)
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "planner", planner_name(self.planner))
        if not 0.0 <= self.warmup_fraction <= 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1], got {self.warmup_fraction}")


@dataclass(frozen=True, slots=True)
class PlanReport:
    plan_id: str
    dataset: str
    snapshot: int
    planner: PlannerName
    tokenizer_sha256: str
    n_requests: int
    n_batches: int
    sharing_ratio: float  # prefix sharing this order keeps (adjacent-prompt reuse)
    dfs_sharing_ratio: float  # the prefix tree's sharing: the most any order can keep
    plan_seconds: float
    model_spec: str | None = None  # cost model the plan was made for
    hardware: str | None = None
    n_already_done: int = 0  # prompts left out: answered earlier (incremental planning)
    n_warmup: int = 0  # requests run first to measure output lengths
    admission: AdmissionKind = AdmissionKind.IN_ORDER
    engine: EngineSettings | None = None  # the settings the run starts with
    estimate_sources: dict[str, int] = field(default_factory=dict)  # requests per source
    # T_seq (vLLM's sequential engine) and T_opt at the estimated output lengths, s
    bounds: EstimatedBounds | None = None
    # prompts over the context (max_model_len tokens): items at the plan's end, not priced,
    # error rows when run (counted in n_requests)
    n_over_length: int = 0
    max_model_len: int | None = None


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The profiled snapshot a plan is made of."""

    dataset: str
    snapshot: int
    tokenizer_sha256: str
    max_model_len: int
    n_prompts: int


def plan_dataset(
    store: Store,
    dataset: str,
    options: PlanOptions | None = None,
    *,
    snapshot: int | None = None,
    model_sha256: str | None = None,
    incremental: bool = False,
    model_dir: Path | None = None,
) -> PlanReport:
    """Plan the latest profiled snapshot of `dataset` (or `snapshot`) and store the plan.

    `model_sha256` names the model that will run it: with `incremental`, a prompt is left out
    when that model already has a result for the same prompt_sha256 and sampling_json (a
    completion, or the error row of a prompt longer than the context: it can never run), and
    with options.use_history, its earlier results of this dataset seed the estimates.
    `model_dir` gives the cost model when options.model_spec is None.
    """
    validate_name(dataset, NameKind.DATASET, "plan_dataset(dataset=...)")
    options = options or PlanOptions()
    if incremental and model_sha256 is None:
        raise ValueError("incremental planning needs the model's sha256 (model_sha256)")
    with (
        store.connect() as con,
        memory_capped(con, PLAN_DUCKDB_MEMORY_BYTES, return_freed=True),
    ):
        snap = _latest_profile(con, dataset, snapshot)
        # the context the engine runs with: what is over it is no work (plan/over_length.py)
        snap = replace(snap, max_model_len=context_limit(snap.max_model_len, options.max_model_len))
        query = RequestQuery(
            snap.dataset,
            snap.snapshot,
            snap.tokenizer_sha256,
            snap.max_model_len,
            done_model_sha256=model_sha256 if incremental else None,
            history_model_sha256=model_sha256 if options.use_history else None,
            history_limit=HISTORY_LIMIT,
        )
        # the requests as columns, their prompts sorted without holding a token id
        read = read_sorted_requests(con, store, query)
        over = read_over_length(con, query)
    cost = resolve_cost(
        options.model_spec,
        options.hardware,
        model_dir,
        options.tensor_parallel_size,
        options.gpu_memory_utilization,
    )
    # what the plan is made of goes when the plan is made: only its items are held while
    # they are stored (at 10M prompts the columns, trie and estimates are ~2 GB)
    report, plan, items, uses_lengths = _planned(read, snap, options, cost)
    del read
    items = with_over_length(items, over, options.batch_size)
    report = replace(
        report,
        n_requests=items.num_rows,
        n_batches=-(-items.num_rows // options.batch_size),
        n_already_done=report.n_already_done - over.num_rows,  # of the prompts read
        n_over_length=over.num_rows,
        max_model_len=snap.max_model_len,
    )
    plan = replace(plan, params={**plan.params, "options": _options_json(options)})
    _store_plan(store, report, plan, items, options, replan=uses_lengths and report.n_warmup > 0)
    return report


def _planned(
    read: SortedRequests, snap: _Snapshot, options: PlanOptions, cost: CostModel
) -> tuple[PlanReport, Plan, pa.Table, bool]:
    """The plan of the read requests: its report, the planner's plan (of the requests after
    the warm-up), its items (every position) and whether the planner reads lengths."""
    started = time.perf_counter()
    requests = read.requests
    estimates = estimate_outputs(requests, read.hints)
    prompts = requests.prompts
    trie = build_compact_trie(prompts)  # kept by `prompts`: sorted once for every use below
    warmup = select_warmup(trie, estimates.measured(), options.warmup_fraction, options.seed)
    plan, order, uses_lengths = _order(requests, estimates, warmup, options, cost)
    plan_seconds = time.perf_counter() - started
    bounds = estimated_bounds(prompts, estimates.tokens, cost)
    shared_prev = adjacent_lcp(prompts, order)
    engine = options.engine or vllm_default_settings(
        cost.hardware, snap.max_model_len, tensor_parallel_size=cost.tensor_parallel_size
    )
    report = PlanReport(
        plan_id=f"{snap.dataset}-s{snap.snapshot}-{plan.planner}-{uuid.uuid4().hex[:8]}",
        dataset=snap.dataset,
        snapshot=snap.snapshot,
        planner=plan.planner,
        tokenizer_sha256=snap.tokenizer_sha256,
        n_requests=len(requests),
        n_batches=-(-len(order) // options.batch_size) if order.size else 0,
        sharing_ratio=_sharing(shared_prev, prompts.total_tokens()),
        dfs_sharing_ratio=trie.sharing_ratio(),
        plan_seconds=plan_seconds,
        n_already_done=snap.n_prompts - len(requests),
        model_spec=cost.model.name,
        hardware=cost.hardware.name,
        n_warmup=len(warmup),
        admission=plan.admission,
        engine=engine.validated(snap.max_model_len),
        estimate_sources=estimates.source_counts(),
        bounds=bounds,
    )
    items = _items_table(requests, estimates, order, shared_prev, len(warmup), plan, options)
    return report, plan, items, uses_lengths


def _options_json(options: PlanOptions) -> dict:
    """The options the executor's re-plan needs again."""
    return {
        "seed": options.seed,
        "batch_size": options.batch_size,
        "warmup_fraction": options.warmup_fraction,
        "use_history": options.use_history,
        "tensor_parallel_size": options.tensor_parallel_size,
        # vLLM's engine arguments that change the price (None: vLLM's default)
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "max_model_len": options.max_model_len,
    }


def _latest_profile(con: object, dataset: str, snapshot: int | None) -> _Snapshot:
    profile = fetch_dicts(
        con,  # type: ignore[arg-type]
        sql.load("plan/latest_profile"),
        {"dataset": dataset, "snapshot": snapshot},
    )
    if not profile:
        raise PlanError(
            f"dataset {dataset!r}"
            + (f" snapshot {snapshot}" if snapshot is not None else "")
            + " has no profile: run `blend profile --dataset NAME` first"
        )
    row = profile[0]
    return _Snapshot(
        row["dataset"],
        row["snapshot"],
        row["tokenizer_sha256"],
        row["max_model_len"],
        row["n_prompts"],
    )


def _sharing(shared_prev: np.ndarray, total_tokens: int) -> float:
    """Prefix sharing an order keeps with a one-request-deep cache (order_sharing_ratio)."""
    return int(shared_prev.sum()) / total_tokens if total_tokens else 0.0


def _order(
    requests: PlanRequests,
    estimates: OutputEstimates,
    warmup: np.ndarray,
    options: PlanOptions,
    cost: CostModel,
) -> tuple[Plan, np.ndarray, bool]:
    """The planner's plan of the requests outside the warm-up, the whole order, and whether
    the planner reads lengths (then the executor re-plans after the warm-up)."""
    is_warmup = np.zeros(len(requests), dtype=bool)
    is_warmup[warmup] = True
    rest = np.flatnonzero(~is_warmup)
    planner = make_planner(
        options.planner, seed=options.seed, batch_size=options.batch_size, cost=cost
    )
    # a planner that reads no lengths gets no estimates (their subset is ~30 bytes a request)
    rest_estimates = estimates.subset(rest) if planner.uses_lengths else None
    plan = planner.plan(requests.subset(rest), rest_estimates)
    order = np.concatenate((warmup, rest[plan.order]))
    return plan, order.astype(np.int64, copy=False), planner.uses_lengths


def _items_table(
    requests: PlanRequests,
    estimates: OutputEstimates,
    order: np.ndarray,
    shared_prev: np.ndarray,
    n_warmup: int,
    plan: Plan,
    options: PlanOptions,
) -> pa.Table:
    n = len(order)
    taken = pa.array(order)
    return pa.table(
        {
            "seq": pa.array(np.arange(n), pa.int64()),
            "request_id": requests.request_ids.take(taken).cast(pa.string()),
            "batch": pa.array(np.arange(n) // options.batch_size, pa.int64()),
            # text columns of a few distinct values: dictionary-encoded (an index a position)
            "side": _sides(n_warmup, plan.sides),
            "prompt_tokens": pa.array(requests.prompts.lengths[order], pa.int64()),
            "shared_prev": pa.array(shared_prev, pa.int64()),
            "est_output_tokens": pa.array(estimates.tokens[order], pa.float64()),
            "est_spread": pa.array(estimates.spread[order], pa.float64()),
            "est_source": estimates.source.dictionary(order),
            "prefix_group": estimates.group_key.dictionary(order),
        }
    )


def _sides(n_warmup: int, sides: np.ndarray) -> pa.DictionaryArray:
    """The warm-up positions' side, "W", then the plan's sides (NULL where none)."""
    warm = pa.array(np.full(n_warmup, "W", dtype=object), pa.string())
    return pa.concat_arrays([warm, pa.array(sides, pa.string())]).dictionary_encode()


def _store_plan(
    store: Store,
    report: PlanReport,
    plan: Plan,
    items: pa.Table,
    options: PlanOptions,
    *,
    replan: bool,
) -> None:
    engine = report.engine
    assert engine is not None
    header = {
        "plan_id": report.plan_id,
        "dataset": report.dataset,
        "snapshot": report.snapshot,
        "planner": report.planner,
        # NULL: the model folder's own config.json (the executor reads it the same way)
        "model_spec": options.model_spec,
        # the spec's own name: the executor prices the engine's GPUs from it again
        "hardware": None if report.hardware is None else one_gpu_name(report.hardware),
        "tokenizer_sha256": report.tokenizer_sha256,
        "params_json": orjson.dumps(plan.params, option=orjson.OPT_SORT_KEYS).decode(),
        "n_requests": report.n_requests,
        "n_batches": report.n_batches,
        "sharing_ratio": report.sharing_ratio,
        "plan_seconds": report.plan_seconds,
        "predicted_makespan_s": None,
        "optimal_makespan_s": None if report.bounds is None else report.bounds.t_opt_s,
        "t_seq_makespan_s": None if report.bounds is None else report.bounds.t_seq_s,
        "admission": report.admission,
        "max_num_batched_tokens": engine.max_num_batched_tokens,
        "max_num_seqs": engine.max_num_seqs,
        "settings_source": engine.source.value,
        "n_warmup": report.n_warmup,
        "replan_after_warmup": replan,
        "search_settings": (
            options.search_settings
            and engine.source is not SettingsSource.EXPLICIT
            and report.n_warmup > 0
        ),
    }
    with (
        store.connect(views=False) as con,
        memory_capped(con, PLAN_DUCKDB_MEMORY_BYTES, return_freed=True),
        transaction(con),
    ):
        con.execute(sql.load("plan/insert_plan"), header)
        con.register("new_plan_items", items)
        con.execute(sql.load("plan/insert_plan_items"), {"plan_id": report.plan_id})
        con.unregister("new_plan_items")
