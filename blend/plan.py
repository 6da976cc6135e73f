"""The plan stage: read a profiled snapshot, run a planner, store the plan in DuckDB."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import orjson
import pyarrow as pa

from blend import sql
from blend.planners import Plan, PlanRequest, make_planner
from blend.store import Store, fetch_arrow, fetch_dicts, transaction
from blend.tree import RadixTree, order_sharing_ratio


class PlanError(Exception):
    """The dataset cannot be planned (not ingested or not profiled)."""


@dataclass(frozen=True, slots=True)
class PlanReport:
    plan_id: str
    dataset: str
    snapshot: int
    planner: str
    tokenizer_sha256: str
    n_requests: int
    n_batches: int
    sharing_ratio: float  # prefix sharing this order keeps (adjacent-prompt reuse)
    dfs_sharing_ratio: float  # the prefix tree's sharing: the most any order can keep
    plan_seconds: float
    model_spec: str | None = None  # cost model the planner used (None: it used none)
    hardware: str | None = None
    n_already_done: int = 0  # prompts left out: answered earlier (incremental planning)


def plan_dataset(
    store: Store,
    dataset: str,
    planner: str = "dfs",
    *,
    snapshot: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    skip_done_model_sha256: str | None = None,
    model_spec: str | None = None,
    hardware: str | None = None,
) -> PlanReport:
    """Plan the latest profiled snapshot of `dataset` (or `snapshot`) and store the plan.

    With `skip_done_model_sha256` (incremental), a prompt is left out when some earlier run of
    that model (model_sha256) has a result for the same prompt_sha256 and sampling_json: a
    completion, or the error row of a prompt longer than the context (it can never run).
    Other error rows are planned again. None plans every prompt.
    `model_spec` / `hardware` name the cost model of resource-aware planners (None: defaults).
    """
    with store.connect() as con:
        profile = fetch_dicts(
            con, sql.load("plan/latest_profile"), {"dataset": dataset, "snapshot": snapshot}
        )
        if not profile:
            raise PlanError(
                f"dataset {dataset!r}"
                + (f" snapshot {snapshot}" if snapshot is not None else "")
                + " has no profile: run `blend profile --dataset NAME` first"
            )
        key = {k: profile[0][k] for k in ("dataset", "snapshot", "tokenizer_sha256")}
        table = fetch_arrow(
            con,
            sql.load("plan/plan_requests"),
            {
                **key,
                "done_model_sha256": skip_done_model_sha256,
                "max_model_len": profile[0]["max_model_len"],
            },
        )
    requests = [
        PlanRequest(request_id=rid, prompt_token_ids=ids, max_tokens=mt)
        for rid, ids, mt in zip(
            table["request_id"].to_pylist(),
            table["token_ids"].to_pylist(),
            table["max_tokens"].to_pylist(),
            strict=True,
        )
    ]
    started = time.perf_counter()
    plan = make_planner(
        planner, seed=seed, batch_size=batch_size, model_spec=model_spec, hardware=hardware
    ).plan(requests)
    plan_seconds = time.perf_counter() - started
    prompts = [r.prompt_token_ids for r in requests]
    report = PlanReport(
        plan_id=f"{dataset}-s{key['snapshot']}-{plan.planner}-{uuid.uuid4().hex[:8]}",
        dataset=dataset,
        snapshot=key["snapshot"],
        planner=str(plan.planner),
        tokenizer_sha256=key["tokenizer_sha256"],
        n_requests=len(requests),
        n_batches=(plan.batches[-1] + 1) if plan.batches else 0,
        sharing_ratio=order_sharing_ratio(prompts, plan.order),
        dfs_sharing_ratio=RadixTree.build(prompts).sharing_ratio(),
        plan_seconds=plan_seconds,
        n_already_done=profile[0]["n_prompts"] - len(requests),
        model_spec=plan.params.get("model_spec", model_spec),
        hardware=plan.params.get("hardware", hardware),
    )
    _store_plan(store, report, plan, [r.request_id for r in requests])
    return report


def _store_plan(store: Store, report: PlanReport, plan: Plan, request_ids: list[str]) -> None:
    items = pa.table(
        {
            "plan_id": [report.plan_id] * len(plan.order),
            "seq": list(range(len(plan.order))),
            "request_id": [request_ids[i] for i in plan.order],
            "batch": plan.batches,
            "side": plan.sides,
        },
        schema=pa.schema(
            [
                ("plan_id", pa.string()),
                ("seq", pa.int64()),
                ("request_id", pa.string()),
                ("batch", pa.int64()),
                ("side", pa.string()),
            ]
        ),
    )
    header = {
        "plan_id": report.plan_id,
        "dataset": report.dataset,
        "snapshot": report.snapshot,
        "planner": report.planner,
        "model_spec": report.model_spec,
        "hardware": report.hardware,
        "tokenizer_sha256": report.tokenizer_sha256,
        "params_json": orjson.dumps(plan.params, option=orjson.OPT_SORT_KEYS).decode(),
        "n_requests": report.n_requests,
        "n_batches": report.n_batches,
        "sharing_ratio": report.sharing_ratio,
        "plan_seconds": report.plan_seconds,
        "predicted_makespan_s": None,
        "optimal_makespan_s": None,
    }
    with store.connect() as con, transaction(con):
        con.execute(sql.load("plan/insert_plan"), header)
        con.register("new_plan_items", items)
        con.execute(sql.load("plan/insert_plan_items"))
        con.unregister("new_plan_items")
