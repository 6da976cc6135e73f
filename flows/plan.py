"""Prefect flow: plan a profiled dataset."""

from __future__ import annotations

from prefect import flow, task
from pydantic import Field

from blend.plan import PlanReport, plan_dataset
from flows.options import StoreOptions


class PlanOptions(StoreOptions):
    dataset: str = Field(description="Dataset name")
    planner: str = Field("dfs", description="fcfs | random | dfs")
    snapshot: int | None = Field(None, description="Snapshot (default: latest)")
    seed: int = 0


plan_task = task(name="plan")(plan_dataset)


@flow(name="blend-plan")
def plan_flow(options: PlanOptions) -> PlanReport:
    return plan_task(
        options.open_store(),
        options.dataset,
        options.planner,
        snapshot=options.snapshot,
        seed=options.seed,
    )
