"""Prefect flow: run a plan through vLLM. The task is tagged `gpu` for concurrency limits."""

from __future__ import annotations

from prefect import flow, task
from prefect.runtime import flow_run
from pydantic import Field

from blend.execute import ExecuteOptions, RunReport, execute_plan
from blend.store import Store
from flows.options import EngineOptions, ModelOptions


class ExecuteFlowOptions(ModelOptions):
    plan_id: str = Field(description="Plan to run")
    run_id: str | None = Field(None, description="Resume this run instead of starting a new one")
    engine: EngineOptions = Field(default_factory=EngineOptions)


@task(name="execute", tags=["gpu"])
def execute_task(
    store: Store, plan_id: str, options: ExecuteFlowOptions, run_id: str | None = None
) -> RunReport:
    config = options.engine.engine_config(options.model_dir(store))
    flow_run_id = flow_run.get_id()
    return execute_plan(
        store,
        plan_id,
        config,
        run_id=run_id,
        options=ExecuteOptions(flow_run_id=str(flow_run_id) if flow_run_id else None),
    )


@flow(name="blend-execute")
def execute_flow(options: ExecuteFlowOptions) -> RunReport:
    return execute_task(options.open_store(), options.plan_id, options, options.run_id)
