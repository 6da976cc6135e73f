"""Prefect flow: plan a profiled dataset (incremental by default)."""

from __future__ import annotations

from prefect import flow, task
from pydantic import Field

from blend.plan.stage import PlanReport, plan_dataset
from blend.store.lineage import model_sha256
from flows.options import DatasetName, ModelOptions, PlanningOptions
from flows.retry import is_transient


class PlanFlowOptions(ModelOptions):
    dataset: DatasetName = Field(description="Dataset name")
    planning: PlanningOptions = Field(default_factory=PlanningOptions)
    snapshot: int | None = Field(None, description="Snapshot (default: latest)")
    incremental: bool = Field(
        True, description="Leave out prompts the model already answered with the same sampling"
    )


plan_task = task(name="plan", retries=2, retry_delay_seconds=10, retry_condition_fn=is_transient)(
    plan_dataset
)


@flow(name="blend-plan")
def plan_flow(options: PlanFlowOptions) -> PlanReport:
    store = options.open_store()
    model_dir = options.model_dir(store)
    return plan_task(
        store,
        options.dataset,
        options.planning.plan_options(),
        snapshot=options.snapshot,
        model_sha256=model_sha256(model_dir),
        incremental=options.incremental,
        model_dir=model_dir,
    )
