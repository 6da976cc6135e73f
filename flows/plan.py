"""Prefect flow: plan a profiled dataset (incremental by default)."""

from __future__ import annotations

from prefect import flow, task
from pydantic import Field

from blend.plan.stage import PlanReport, plan_dataset
from blend.store.lineage import model_sha256
from flows.logs import log_stage
from flows.options import DatasetName, ModelOptions, PlanningOptions
from flows.retry import is_transient


class PlanFlowOptions(ModelOptions):
    form_order = ("dataset", "snapshot", "model", "incremental", "planning", "store")

    dataset: DatasetName = Field(title="Dataset", description="Dataset name")
    planning: PlanningOptions = Field(default_factory=PlanningOptions, title="Planning")
    snapshot: int | None = Field(None, title="Snapshot", description="Snapshot (default: latest)")
    incremental: bool = Field(
        True,
        title="Only new prompts",
        description="Leave out prompts the model already answered with the same sampling",
    )


plan_task = task(name="plan", retries=2, retry_delay_seconds=10, retry_condition_fn=is_transient)(
    plan_dataset
)


@flow(name="blend-plan")
def plan_flow(options: PlanFlowOptions) -> PlanReport:
    store = options.open_store()
    model_dir = options.model_dir(store)
    report = plan_task(
        store,
        options.dataset,
        options.planning.plan_options(),
        snapshot=options.snapshot,
        model_sha256=model_sha256(model_dir),
        incremental=options.incremental,
        model_dir=model_dir,
    )
    log_stage("plan", report)
    return report
