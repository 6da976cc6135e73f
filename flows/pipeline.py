"""Prefect flow: the whole pipeline, each stage its own task (what `blend-pipeline/nightly` runs).

Incremental by default: ingest reuses an unchanged file's snapshot, and the plan leaves out
every prompt this model already answered with the same sampling, so a nightly run over the
same input plans nothing and starts no engine. The summary artifact is written either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow
from pydantic import Field, model_validator

from blend.execute import RunReport, new_run_id
from blend.ingest import IngestReport
from blend.lineage import model_sha256
from blend.names import NameKind, validate_name
from blend.plan import PlanReport
from blend.profile import ProfileReport
from flows.artifacts import publish_summary
from flows.execute import ExecuteFlowOptions, execute_task
from flows.ingest import ingest_task
from flows.options import DatasetName, EngineOptions, ModelOptions, PlanningOptions
from flows.plan import plan_task
from flows.profile import profile_task


class PipelineOptions(ModelOptions):
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

    @model_validator(mode="after")
    def _stem_is_a_name(self) -> PipelineOptions:
        """Without `dataset`, the input file's stem is the name: it must follow the rule too."""
        if self.input_path and not self.dataset:
            stem = Path(self.input_path).stem
            validate_name(stem, NameKind.DATASET, f"the stem of input_path {self.input_path!r}")
        return self


@dataclass(frozen=True, slots=True)
class PipelineFlowReport:
    ingest: IngestReport
    profile: ProfileReport
    plan: PlanReport
    run: RunReport | None  # None: nothing to run, every prompt already has a result


@flow(name="blend-pipeline")
def pipeline_flow(options: PipelineOptions | None = None) -> PipelineFlowReport:
    options = options or PipelineOptions()
    store = options.open_store()
    input_path, dataset = _input(options, store.root)
    model_dir = options.model_dir(store)
    ingested = ingest_task(store, input_path, dataset)
    profiled = profile_task(store, dataset, model_dir, snapshot=ingested.snapshot)
    planned = plan_task(
        store,
        dataset,
        options.planning.plan_options(),
        snapshot=ingested.snapshot,
        model_sha256=model_sha256(model_dir),
        incremental=options.incremental,
        model_dir=model_dir,
    )
    run = None
    if planned.n_requests:
        execute_options = ExecuteFlowOptions(
            store=options.store,
            model=str(model_dir),
            plan_id=planned.plan_id,
            engine=options.engine,
            gpu_limit=options.gpu_limit,
        )
        # The run id is fixed here, so a retried execute task resumes the same run.
        run = execute_task(store, planned.plan_id, execute_options, new_run_id())
    publish_summary(store, planned, profiled, run)
    return PipelineFlowReport(ingested, profiled, planned, run)


def _input(options: PipelineOptions, store_root: Path) -> tuple[Path, str]:
    if options.input_path:
        path = Path(options.input_path)
        return path, options.dataset or path.stem
    from blend.demo.dataset import write_demo_dataset

    return write_demo_dataset(store_root / "inputs" / "demo.jsonl"), options.dataset or "demo"


if __name__ == "__main__":
    # Ephemeral (no server): no global concurrency limit to hold.
    pipeline_flow(PipelineOptions(gpu_limit=None))
