"""Prefect flow: run a plan through vLLM, holding a `gpu` global concurrency slot.

The task shows live progress as a progress artifact and ends with a table artifact of the
run's numbers. It retries transient failures; a retry gets the same run id, so it resumes
the run (finished Parquet parts are kept) instead of starting over.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound
from prefect.runtime import deployment, flow_run
from pydantic import Field

from blend.execute import ExecuteOptions, RunReport, execute_plan, new_run_id
from blend.store import Store
from flows.artifacts import ProgressArtifact, publish_run_table
from flows.options import EngineOptions, ModelOptions, PlanId, RunId
from flows.retry import GpuLimitMissingError, is_transient


class ExecuteFlowOptions(ModelOptions):
    plan_id: PlanId = Field(description="Plan to run")
    run_id: RunId | None = Field(None, description="Resume this run instead of starting a new one")
    engine: EngineOptions = Field(default_factory=EngineOptions)
    gpu_limit: str | None = Field(
        "gpu",
        description="Global concurrency limit held while the engine runs (one slot per GPU; "
        "create it first: `prefect gcl create gpu --limit 1`); null: run without one",
    )


@task(
    name="execute",
    tags=["gpu"],
    retries=2,
    retry_delay_seconds=30,
    retry_condition_fn=is_transient,
)
def execute_task(store: Store, plan_id: str, options: ExecuteFlowOptions, run_id: str) -> RunReport:
    """Run (or, on a retry, resume) `run_id` of plan `plan_id`."""
    config = options.engine.engine_config(options.model_dir(store))
    flow_run_id = flow_run.get_id()
    with _gpu_slot(options.gpu_limit):
        report = execute_plan(
            store,
            plan_id,
            config,
            run_id=run_id,
            options=ExecuteOptions(
                flow_run_id=str(flow_run_id) if flow_run_id else None,
                deployment_name=deployment.name,
            ),
            progress=ProgressArtifact(plan_id),
        )
    publish_run_table(report)
    return report


@flow(name="blend-execute")
def execute_flow(options: ExecuteFlowOptions) -> RunReport:
    run_id = options.run_id or new_run_id()
    return execute_task(options.open_store(), options.plan_id, options, run_id)


def _gpu_slot(limit: str | None) -> AbstractContextManager[object]:
    """One slot of the global concurrency limit `limit` (None: no limit)."""
    if limit is None:
        return nullcontext()
    _require_limit(limit)
    return concurrency(limit, occupy=1, strict=True)


def _require_limit(name: str) -> None:
    """Fail with the fix when the limit is missing (Prefect would say only that it must exist)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            raise GpuLimitMissingError(
                f"global concurrency limit {name!r} does not exist: create it with "
                f"`prefect gcl create {name} --limit 1` (one slot per GPU; "
                "deployments/local-up.sh does), or set gpu_limit to null"
            ) from None
