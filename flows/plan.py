"""Prefect flow: plan a profiled dataset (incremental by default)."""

from __future__ import annotations

from prefect import flow, task
from pydantic import Field

from blend.lineage import model_sha256
from blend.plan import PlanReport, plan_dataset
from flows.options import ModelOptions
from flows.retry import is_transient


class PlanOptions(ModelOptions):
    dataset: str = Field(description="Dataset name")
    planner: str = Field("dfs", description="fcfs | random | dfs")
    snapshot: int | None = Field(None, description="Snapshot (default: latest)")
    seed: int = 0
    incremental: bool = Field(
        True, description="Leave out prompts the model already answered with the same sampling"
    )


plan_task = task(name="plan", retries=2, retry_delay_seconds=10, retry_condition_fn=is_transient)(
    plan_dataset
)


@flow(name="blend-plan")
def plan_flow(options: PlanOptions) -> PlanReport:
    store = options.open_store()
    return plan_task(
        store,
        options.dataset,
        options.planner,
        snapshot=options.snapshot,
        seed=options.seed,
        skip_done_model_sha256=model_sha256(options.model_dir(store))
        if options.incremental
        else None,
    )
