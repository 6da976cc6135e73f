"""Prefect flow: the whole pipeline, each stage its own task (what `blend-pipeline/nightly` runs).

Incremental by default: ingest reuses an unchanged file's snapshot, and the plan leaves out
every prompt this model already answered with the same sampling, so a nightly run over the
same input plans nothing and starts no engine. The summary artifact is written either way.

The chain of stages is the library's (blend.pipeline.chain.run_pipeline, what `blend run`
runs): this flow hands it a hook that runs each stage function as its Prefect task, so the
demo default input, the resume of an unfinished run and the stage order live in one place.
Each stage's lines (what `blend run` prints) go to the flow run's log (flows/logs.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, cast

from prefect import Task, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from pydantic import Field, model_validator

from blend.execute.stage import ExecuteOptions, execute_plan
from blend.ingest import input_stem
from blend.pipeline import chain as pipeline
from blend.pipeline.chain import PipelineReport, StageRunner, run_pipeline
from blend.plan.capacity import CapacityReport, pipeline_capacity
from blend.store.database import Store
from blend.store.export import ExportFormat, ExportReport, export_results
from blend.store.names import NameKind, validate_name
from flows.artifacts import artifact_key, publish_summary
from flows.execute import execute_stage_task
from flows.ingest import ingest_task
from flows.logs import log_stage
from flows.options import (
    DatasetName,
    EngineOptions,
    ModelOptions,
    PlanningOptions,
    ScaleOutOptions,
    choice_titles,
)
from flows.plan import plan_task
from flows.profile import profile_task

T = TypeVar("T")


class PipelineOptions(ModelOptions, ScaleOutOptions):
    """What to run (input, dataset, model), how to plan it, the engine and its execution, the
    capacity prediction, and where the results go: the form's groups, in that order."""

    form_order = (
        # what to run on
        "input_path",
        "dataset",
        "model",
        "incremental",
        # planning
        "planning",
        # engine and execution
        "engine",
        "engines",
        "gpu_limit",
        # capacity
        "capacity_deadline",
        "capacity_max_engines",
        # outputs
        "store",
        "results_uri",
        "export_format",
        "export_out",
    )

    input_path: str | None = Field(
        None,
        title="Input file",
        description="Prompts (JSONL, OpenAI batch JSONL, CSV or Parquet): a path on the worker "
        "or a URI, e.g. s3://bucket/prompts.jsonl (default: the bundled demo dataset)",
    )
    dataset: DatasetName | None = Field(
        None,
        title="Dataset",
        description="Name of the dataset in the store: letters, digits, . _ - "
        "(default: the input's file name without its extension)",
    )
    planning: PlanningOptions = Field(default_factory=PlanningOptions, title="Planning")
    incremental: bool = Field(
        True,
        title="Only new prompts",
        description="Run only prompts without a result from this model and sampling; "
        "off: run every prompt again",
    )
    engine: EngineOptions = Field(default_factory=EngineOptions, title="Engine settings")
    gpu_limit: str | None = Field(
        "gpu",
        title="GPU concurrency limit",
        description="Global concurrency limit the execute task holds, one slot per engine "
        "(`prefect gcl create gpu --limit 1`)",
        json_schema_extra=choice_titles("Limit", "No limit"),
    )
    capacity_deadline: str | None = Field(
        None,
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        title="Capacity deadline",
        description="HH:MM in the worker's local time zone (its TZ; no UTC offset): before "
        "executing, predict how many engines finish by then; empty: no prediction",
    )
    capacity_max_engines: int = Field(
        8,
        ge=1,
        title="Capacity: most engines",
        description="Engine counts the prediction tries: 1, 2, 4, ... up to this",
    )

    export_format: ExportFormat | None = Field(
        None,
        title="Export format",
        description="After the run, write the dataset's answers (the latest per request, in "
        "input order) as openai-batch, jsonl, parquet or csv; empty: no export",
    )
    export_out: str | None = Field(
        None,
        title="Export to",
        description="The export's file on the worker or a URI, e.g. "
        "s3://bucket/out/answers.jsonl (needed with an export format)",
    )

    @model_validator(mode="after")
    def _export_has_a_target(self) -> PipelineOptions:
        if (self.export_format is None) != (self.export_out is None):
            raise ValueError("export_format and export_out go together: give both or neither")
        return self

    @model_validator(mode="after")
    def _stem_is_a_name(self) -> PipelineOptions:
        """Without `dataset`, the input file's stem is the name: it must follow the rule too."""
        if self.input_path and not self.dataset:
            stem = input_stem(self.input_path)  # of the object's name for a URI
            validate_name(stem, NameKind.DATASET, f"the stem of input_path {self.input_path!r}")
        return self

    def pipeline_options(self) -> pipeline.PipelineOptions:
        """The library's options (blend.pipeline.chain): one chain for the CLI and the flow."""
        return pipeline.PipelineOptions(
            input_path=self.input_path or None,  # text: a URI stays one
            dataset=self.dataset,
            plan=dataclasses.replace(
                self.planning.plan_options(),
                tensor_parallel_size=self.engine.vllm.tensor_parallel_size or 1,
                gpu_memory_utilization=self.engine.gpu_memory_utilization,
                max_model_len=self.engine.vllm.max_model_len,
            ),
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
    """The capacity prediction as a markdown artifact (one key per dataset); its lines go to
    the log with the other stages' (`log_stage`)."""
    lines = report.summary()
    dataset = report.dataset or "dataset"
    create_markdown_artifact(
        "\n".join([f"# Capacity of {dataset}", "", *(f"    {line}" for line in lines)]),
        key=artifact_key("capacity", dataset),
        description=f"engines needed for {dataset} by {report.deadline:%H:%M}",
    )


@flow(name="blend-pipeline")
def pipeline_flow(options: PipelineOptions) -> PipelineReport:
    """The whole pipeline, incremental by default.

    Args:
        options: What to run, how to plan and execute it, and where the results go.
    """
    store = options.open_store()
    model_dir = options.model_dir(store)
    engine_config = options.engine.engine_config(model_dir)  # vLLM checks its arguments first
    report = run_pipeline(
        store,
        engine_config,
        options.pipeline_options(),
        on_stage=log_stage,
        run_stage=stage_runner(options.gpu_limit),
    )
    publish_summary(store, report.plan, report.profile, report.run)
    if options.export_format is not None and options.export_out is not None:
        export_task(store, report.ingest.dataset, options.export_out, options.export_format)
    return report


@task(name="export")
def export_task(store: Store, dataset: str, out: str, fmt: ExportFormat) -> ExportReport:
    """The dataset's answers as one file (blend.store.export): the flow's optional last task."""
    exported = export_results(store, dataset, out, fmt)
    get_run_logger().info(
        "export: %d answers (%d errors) of %s as %s to %s",
        exported.n_rows,
        exported.n_errors,
        dataset,
        fmt,
        exported.path,
    )
    return exported


if __name__ == "__main__":
    # Ephemeral (no server): no global concurrency limit to hold.
    pipeline_flow(PipelineOptions(gpu_limit=None))
