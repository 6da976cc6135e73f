"""Prefect flow: the whole pipeline, each stage its own task (what `blend-pipeline/nightly` runs).

Incremental by default: ingest reuses an unchanged file's snapshot, and the plan leaves out
every prompt this model already answered with the same sampling, so a nightly run over the
same input plans nothing and starts no engine. The summary artifact is written either way.

The chain of stages is the library's (blend.pipeline.chain.run_pipeline, what `blend run`
runs): this flow hands it a hook that runs each stage function as its Prefect task, so the
demo default input, the resume of an unfinished run and the stage order live in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from prefect import Task, flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import Field, model_validator

from blend.execute.stage import ExecuteOptions, execute_plan
from blend.pipeline import chain as pipeline
from blend.pipeline.chain import PipelineReport, StageRunner, run_pipeline
from blend.plan.capacity import CapacityReport, pipeline_capacity
from blend.store.names import NameKind, validate_name
from flows.artifacts import artifact_key, publish_summary
from flows.execute import execute_stage_task
from flows.ingest import ingest_task
from flows.options import (
    DatasetName,
    EngineOptions,
    ModelOptions,
    PlanningOptions,
    ScaleOutOptions,
)
from flows.plan import plan_task
from flows.profile import profile_task

T = TypeVar("T")


class PipelineOptions(ModelOptions, ScaleOutOptions):
    input_path: str | None = Field(None, description="Input file (default: the demo dataset)")
    dataset: DatasetName | None = Field(None, description="Dataset name (default: the file's stem)")
    planning: PlanningOptions = Field(default_factory=PlanningOptions)
    incremental: bool = Field(
        True,
        description="Run only prompts without a result from this model and sampling; "
        "false: run every prompt again",
    )
    engine: EngineOptions = Field(default_factory=EngineOptions)
    gpu_limit: str | None = Field(
        "gpu",
        description="Global concurrency limit held by the execute task (one slot per GPU; "
        "`prefect gcl create gpu --limit 1`); null: none",
    )
    capacity_deadline: str | None = Field(
        None,
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="HH:MM: before executing, predict how many engines (GPUs) finish the run "
        "by then (log lines and a capacity artifact); null: no prediction",
    )
    capacity_max_engines: int = Field(8, ge=1, description="Engine counts tried: 1, 2, 4, ...")

    @model_validator(mode="after")
    def _stem_is_a_name(self) -> PipelineOptions:
        """Without `dataset`, the input file's stem is the name: it must follow the rule too."""
        if self.input_path and not self.dataset:
            stem = Path(self.input_path).stem
            validate_name(stem, NameKind.DATASET, f"the stem of input_path {self.input_path!r}")
        return self

    def pipeline_options(self) -> pipeline.PipelineOptions:
        """The library's options (blend.pipeline.chain): one chain for the CLI and the flow."""
        return pipeline.PipelineOptions(
            input_path=Path(self.input_path) if self.input_path else None,
            dataset=self.dataset,
            plan=self.planning.plan_options(),
            incremental=self.incremental,
            execute=ExecuteOptions(engines=self.engines, results_uri=self.results_uri),
            capacity_deadline=self.capacity_deadline,
            capacity_max_engines=self.capacity_max_engines,
        )


# The stage functions of blend.pipeline.chain, each run as its own Prefect task.
STAGE_TASKS: dict[Callable[..., Any], Task[..., Any]] = {
    t.fn: t for t in (ingest_task, profile_task, plan_task)
}


def stage_runner(gpu_limit: str | None) -> StageRunner:
    """blend.pipeline.chain's `run_stage` hook: each stage function as its task; the execute stage
    holds a `gpu_limit` slot. Anything else (the quick look-ups) is called as it is."""

    def run_stage(name: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if fn is execute_plan:
            return cast(T, execute_stage_task(*args, gpu_limit=gpu_limit, **kwargs))
        if fn is pipeline_capacity:  # published as soon as known, before the run starts
            report = cast(CapacityReport, fn(*args, **kwargs))
            publish_capacity(report)
            return cast(T, report)
        task_ = STAGE_TASKS.get(fn)
        return cast(T, task_(*args, **kwargs)) if task_ is not None else fn(*args, **kwargs)

    return run_stage


def publish_capacity(report: CapacityReport) -> None:
    """The capacity prediction as log lines and a markdown artifact (one key per dataset)."""
    logger = get_run_logger()
    lines = report.summary()
    for line in lines:
        logger.info("capacity: %s", line)
    dataset = report.dataset or "dataset"
    create_markdown_artifact(
        "\n".join([f"# Capacity of {dataset}", "", *(f"    {line}" for line in lines)]),
        key=artifact_key("capacity", dataset),
        description=f"engines needed for {dataset} by {report.deadline:%H:%M}",
    )


@flow(name="blend-pipeline")
def pipeline_flow(options: PipelineOptions | None = None) -> PipelineReport:
    options = options or PipelineOptions()
    store = options.open_store()
    model_dir = options.model_dir(store)
    report = run_pipeline(
        store,
        options.engine.engine_config(model_dir),
        options.pipeline_options(),
        run_stage=stage_runner(options.gpu_limit),
    )
    publish_summary(store, report.plan, report.profile, report.run)
    return report


if __name__ == "__main__":
    # Ephemeral (no server): no global concurrency limit to hold.
    pipeline_flow(PipelineOptions(gpu_limit=None))
