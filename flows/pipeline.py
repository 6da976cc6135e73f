"""Prefect flow: the whole pipeline, each stage its own task."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from pydantic import Field

from blend.pipeline import PipelineReport
from flows.execute import ExecuteFlowOptions, execute_task
from flows.ingest import ingest_task
from flows.options import EngineOptions, ModelOptions
from flows.plan import plan_task
from flows.profile import profile_task


class PipelineOptions(ModelOptions):
    input_path: str | None = Field(None, description="Input file (default: the demo dataset)")
    dataset: str | None = Field(None, description="Dataset name (default: the file's stem)")
    planner: str = Field("dfs", description="fcfs | random | dfs")
    seed: int = 0
    engine: EngineOptions = Field(default_factory=EngineOptions)


@flow(name="blend-pipeline")
def pipeline_flow(options: PipelineOptions | None = None) -> PipelineReport:
    options = options or PipelineOptions()
    store = options.open_store()
    input_path, dataset = _input(options, store.root)
    model_dir = options.model_dir(store)
    ingested = ingest_task(store, input_path, dataset)
    profiled = profile_task(store, dataset, model_dir, snapshot=ingested.snapshot)
    planned = plan_task(
        store, dataset, options.planner, snapshot=ingested.snapshot, seed=options.seed
    )
    execute_options = ExecuteFlowOptions(
        store=options.store, model=str(model_dir), plan_id=planned.plan_id, engine=options.engine
    )
    run = execute_task(store, planned.plan_id, execute_options)
    return PipelineReport(ingested, profiled, planned, run)


def _input(options: PipelineOptions, store_root: Path) -> tuple[Path, str]:
    if options.input_path:
        path = Path(options.input_path)
        return path, options.dataset or path.stem
    from blend.demo.dataset import write_demo_dataset

    return write_demo_dataset(store_root / "inputs" / "demo.jsonl"), options.dataset or "demo"


if __name__ == "__main__":
    pipeline_flow()
