"""Prefect flow: run a plan through vLLM, holding a `gpu` global concurrency slot.

The task shows live progress as a progress artifact and as lines in the run's log (the
lines `blend execute` writes, every 30 s), and ends with a table artifact of the run's
numbers. It retries transient failures; a retry gets the same run id, so it resumes
the run (finished Parquet parts are kept) instead of starting over.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext

from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound
from prefect.runtime import deployment, flow_run
from pydantic import Field

from blend.engines.base import EngineConfig
from blend.execute.stage import (
    ExecuteOptions,
    ProgressCallback,
    RunReport,
    execute_plan,
    new_run_id,
)
from blend.store.database import Store
from flows.artifacts import ProgressArtifact, publish_run_table
from flows.logs import log_stage, progress_log
from flows.options import (
    EngineOptions,
    ModelOptions,
    PlanId,
    RunId,
    ScaleOutOptions,
    choice_titles,
)
from flows.retry import GpuLimitMissingError, is_transient

logger = logging.getLogger(__name__)


class ExecuteFlowOptions(ModelOptions, ScaleOutOptions):
    form_order = (
        *("plan_id", "run_id", "model"),
        *("engine", "engines", "gpu_limit"),
        *("store", "results_uri"),
    )

    plan_id: PlanId = Field(title="Plan id", description="The plan to run")
    run_id: RunId | None = Field(
        None, title="Run id", description="Resume this run instead of starting a new one"
    )
    engine: EngineOptions = Field(default_factory=EngineOptions, title="Engine settings")
    gpu_limit: str | None = Field(
        "gpu",
        title="GPU concurrency limit",
        description="Global concurrency limit held while the engine runs, one slot per engine "
        "(create it first: `prefect gcl create gpu --limit 1`)",
        json_schema_extra=choice_titles("Limit", "No limit"),
    )


# Both execute tasks: a retry resumes the same run id, so it never duplicates rows.
_execute_task = task(
    name="execute",
    tags=["gpu"],
    retries=2,
    retry_delay_seconds=30,
    retry_condition_fn=is_transient,
)


@_execute_task
def execute_task(store: Store, plan_id: str, options: ExecuteFlowOptions, run_id: str) -> RunReport:
    """Run (or, on a retry, resume) `run_id` of plan `plan_id`."""
    config = options.engine.engine_config(options.model_dir(store))
    execute = ExecuteOptions(engines=options.engines, results_uri=options.results_uri)
    return _execute(store, plan_id, config, run_id, execute, options.gpu_limit)


@_execute_task
def execute_stage_task(
    store: Store,
    plan_id: str,
    engine_config: EngineConfig,
    *,
    run_id: str,
    options: ExecuteOptions,
    gpu_limit: str | None,
    progress: ProgressCallback | None = None,
) -> RunReport:
    """The pipeline's execute stage (blend.execute.stage.execute_plan's arguments) as a task; the
    progress shows as an artifact instead of `progress`."""
    del progress  # the progress artifact (a callback cannot reach the UI)
    return _execute(store, plan_id, engine_config, run_id, options, gpu_limit)


def _execute(
    store: Store,
    plan_id: str,
    config: EngineConfig,
    run_id: str,
    options: ExecuteOptions,
    gpu_limit: str | None,
) -> RunReport:
    flow_run_id = flow_run.get_id()
    options = dataclasses.replace(
        options,
        flow_run_id=str(flow_run_id) if flow_run_id else None,
        deployment_name=deployment.name,
    )
    # one slot per engine: K engines hold K GPUs (blend/scale runs them as Ray actors)
    slots = _gpu_slot(gpu_limit, options.engines)
    with (
        slots,
        BackgroundProgress(ProgressArtifact(plan_id)) as artifact,
        progress_log("execute") as log_lines,
    ):

        def progress(done: int, total: int, output_tokens: int) -> None:
            log_lines(done, total, output_tokens)  # queued for the API: never waits for it
            artifact(done, total, output_tokens)

        report = execute_plan(
            store, plan_id, config, run_id=run_id, options=options, progress=progress
        )
    try:
        publish_run_table(report)
    except Exception as exc:  # the run's data is in the store; the table is only a view of it
        logger.warning("run %s: the run table artifact was not published: %s", run_id, exc)
    return report


class BackgroundProgress:
    """A progress callback run on one background thread, so that a slow or absent Prefect
    API never stalls the engine loop or fails the run: the server going away mid-run costs
    progress updates only (the client retries each call for about a minute first).

    Updates that arrive while one is in flight are dropped, except the last (done == total);
    a failed update is logged once. Leaving the context waits up to `drain_s` seconds (s).
    """

    def __init__(self, inner: ProgressCallback, drain_s: float = 5.0) -> None:
        self._inner = inner
        self._drain_s = drain_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blend-progress")
        self._in_flight: Future[None] | None = None
        self._warned = False

    def __enter__(self) -> BackgroundProgress:
        return self

    def __call__(self, done: int, total: int, output_tokens: int) -> None:
        busy = self._in_flight is not None and not self._in_flight.done()
        if busy and done < total:
            return
        # the Prefect run context (which task run this is) travels with the call
        context = contextvars.copy_context()
        self._in_flight = self._pool.submit(context.run, self._update, done, total, output_tokens)

    def _update(self, done: int, total: int, output_tokens: int) -> None:
        try:
            self._inner(done, total, output_tokens)
        except Exception as exc:
            if not self._warned:
                self._warned = True
                logger.warning("progress artifact not updated (Prefect API: %s)", exc)

    def __exit__(self, *exc: object) -> None:
        if self._in_flight is not None:
            wait([self._in_flight], timeout=self._drain_s)
        self._pool.shutdown(wait=False, cancel_futures=True)


@flow(name="blend-execute")
def execute_flow(options: ExecuteFlowOptions) -> RunReport:
    run_id = options.run_id or new_run_id()
    report = execute_task(options.open_store(), options.plan_id, options, run_id)
    log_stage("execute", report)
    return report


def _gpu_slot(limit: str | None, slots: int = 1) -> AbstractContextManager[object]:
    """`slots` slots of the global concurrency limit `limit` (None: no limit)."""
    if limit is None:
        return nullcontext()
    _require_limit(limit)
    return concurrency(limit, occupy=slots, strict=True)


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
