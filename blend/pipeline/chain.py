"""The whole pipeline in one call: ingest -> profile -> plan -> execute, with stage timings.

The one chain of stages: the CLI's `blend run` calls it directly, and the Prefect flow
(flows/pipeline.py) calls it with a `run_stage` hook that runs each stage function as a Prefect
task (so each stage shows up, and retries, on its own in the UI). The demo input default lives
here too (`pipeline_input`).

A plain re-run continues what an earlier one left unfinished: before planning, the latest run
of the same dataset snapshot, planner and model that did not complete (killed, failed) is
resumed instead of planning again (blend/store/runs.py); its finished parts are kept and each
missing request runs once. A run another process is executing right now is waited for.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from blend.cost.model import model_spec_from_dir
from blend.cost.resolve import resolve_cost
from blend.engines.base import EngineConfig, EngineName
from blend.engines.selection import engine_choice
from blend.engines.settings import hetegen_default_settings
from blend.execute.stage import (
    ExecuteOptions,
    ProgressCallback,
    RunReport,
    execute_plan,
    new_run_id,
)
from blend.ingest import IngestReport, check_input, ingest_file, input_stem
from blend.plan.capacity import CapacityReport, pipeline_capacity
from blend.plan.items import plan_row_settings
from blend.plan.over_length import context_limit
from blend.plan.stage import PlanOptions, PlanReport, plan_dataset
from blend.planners import planner_name
from blend.planners.base import AdmissionKind, PlannerName
from blend.profile.stage import ProfileReport, profile_dataset
from blend.simulate.sequential_bound import EstimatedBounds
from blend.store import sql
from blend.store.database import Store, fetch_dicts
from blend.store.lineage import model_sha256
from blend.store.runs import UnfinishedRun, unfinished_run

T = TypeVar("T")

DEMO_DATASET = "demo"


class StageRunner(Protocol):
    """Runs one stage: `fn(*args, **kwargs)`, maybe wrapped (a Prefect task, a timer)."""

    def __call__(self, name: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


def call_stage(name: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """The plain StageRunner: call the stage function."""
    return fn(*args, **kwargs)


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    """What to run and how (the CLI's `blend run` and the pipeline flow fill it)."""

    # a local path or a URI as text (s3://...); None: the bundled demo dataset, in the store
    input_path: str | Path | None = None
    dataset: str | None = None  # None: the file's stem ("demo" for the demo)
    plan: PlanOptions = field(default_factory=PlanOptions)
    incremental: bool = True  # plan only prompts without a result from this model + sampling
    resume: bool = True  # continue the latest unfinished run (incremental runs only)
    execute: ExecuteOptions = field(default_factory=ExecuteOptions)
    # HH:MM: before executing, predict how many engines finish the run by then (capacity.py)
    capacity_deadline: str | None = None
    capacity_max_engines: int = 8


@dataclass(frozen=True, slots=True)
class PipelineReport:
    ingest: IngestReport
    profile: ProfileReport
    plan: PlanReport
    run: RunReport | None  # None when the plan had nothing left to run (incremental)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage (s)
    resumed_run: str | None = None  # the unfinished run this pipeline continued, if any
    capacity: CapacityReport | None = None  # with options.capacity_deadline


def pipeline_input(
    store: Store, input_path: str | Path | None, dataset: str | None
) -> tuple[str | Path, str]:
    """The input file and dataset name: as given, or the demo dataset (written once into
    `<store>/inputs/demo.jsonl`) named "demo"."""
    if input_path is not None:
        return input_path, dataset or input_stem(input_path)
    from blend.demo.dataset import write_demo_dataset

    path = write_demo_dataset(store.root / "inputs" / "demo.jsonl")
    return path, dataset or DEMO_DATASET


def _plan_for_engine(
    plan: PlanOptions, engine_config: EngineConfig, max_model_len: int
) -> PlanOptions:
    """The plan's options for the engine that will run it: a run on the hetegen engine starts
    with hetegen's own budgets, not vLLM's (unless the user named budgets)."""
    if plan.engine is not None or engine_config.engine is EngineName.VLLM:
        return plan
    try:
        engine = engine_choice(engine_config).engine
    except (OSError, ValueError):  # no weight files to size: the executor will say so
        return plan
    if engine is not EngineName.HETEGEN:
        return plan
    return dataclasses.replace(plan, engine=hetegen_default_settings(max_model_len))


def run_pipeline(
    store: Store,
    engine_config: EngineConfig,
    options: PipelineOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    on_stage: Callable[[str, object], None] | None = None,
    run_stage: StageRunner = call_stage,
) -> PipelineReport:
    """Run every stage; `on_stage(name, report)` is called after each.

    With `options.incremental`, prompts that already have a result from this model and
    sampling are not planned again, and when nothing is left the engine is not started.
    """
    options = options or PipelineOptions()
    input_path, dataset = pipeline_input(store, options.input_path, options.dataset)
    check_input(input_path)  # a missing or unreachable input fails before the model is hashed
    model_dir = engine_config.model_dir
    model_hash = model_sha256(model_dir)
    seconds: dict[str, float] = {}

    def stage(name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        result = run_stage(name, fn, *args, **kwargs)
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
        if on_stage is not None:
            on_stage(name, result)
        return result

    ingested = stage("ingest", ingest_file, store, input_path, dataset)
    profiled = stage(
        "profile",
        profile_dataset,
        store,
        dataset,
        model_dir,
        snapshot=ingested.snapshot,
        model_sha256=model_hash,
    )
    unfinished = None
    if options.resume and options.incremental:
        unfinished = unfinished_run(
            store,
            dataset,
            ingested.snapshot,
            str(planner_name(options.plan.planner)),
            model_hash,
        )
    if unfinished is not None:
        planned = stage("plan", stored_plan_report, store, unfinished.plan_id, model_dir)
    else:
        planned = stage(
            "plan",
            plan_dataset,
            store,
            dataset,
            _plan_for_engine(
                options.plan,
                engine_config,
                context_limit(profiled.max_model_len, options.plan.max_model_len),
            ),
            snapshot=ingested.snapshot,
            model_sha256=model_hash,
            incremental=options.incremental,
            model_dir=model_dir,
        )
    resumed = unfinished.run_id if unfinished is not None else None
    if planned.n_requests == 0:
        return PipelineReport(ingested, profiled, planned, None, seconds, resumed)
    capacity = None
    if options.capacity_deadline is not None:
        plan = options.plan
        cost = resolve_cost(
            plan.model_spec,
            plan.hardware,
            model_dir,
            plan.tensor_parallel_size,
            plan.gpu_memory_utilization,
        )
        capacity = stage(
            "capacity",
            pipeline_capacity,
            store,
            dataset,
            options.capacity_deadline,
            cost,
            model_sha256=model_hash,
            incremental=options.incremental,
            max_engines=options.capacity_max_engines,
            max_model_len=plan.max_model_len,
        )
    # The run id is fixed before the stage, so a retried execute stage resumes the same run.
    run = stage(
        "execute",
        execute_plan,
        store,
        planned.plan_id,
        engine_config,
        run_id=resumed or new_run_id(),
        options=options.execute,
        progress=progress,
    )
    return PipelineReport(ingested, profiled, planned, run, seconds, resumed, capacity)


def stored_plan_report(store: Store, plan_id: str, model_dir: Path) -> PlanReport:
    """The report of a plan made earlier, read back from the store (what a resumed run runs;
    the prefix tree's sharing is not stored: the plan's own is reported for it). A plan made
    for the model folder's own config (no model spec) names that config's model."""
    with store.connect(views=False) as con:
        rows = fetch_dicts(con, sql.load("execute/plan_report"), {"plan_id": plan_id})
    if not rows:
        raise KeyError(f"no plan {plan_id!r} in {store.db_path}")
    row = rows[0]
    return PlanReport(
        plan_id=row["plan_id"],
        dataset=row["dataset"],
        snapshot=row["snapshot"],
        planner=PlannerName(row["planner"]),
        tokenizer_sha256=row["tokenizer_sha256"],
        n_requests=row["n_requests"],
        n_batches=row["n_batches"],
        sharing_ratio=row["sharing_ratio"] or 0.0,
        dfs_sharing_ratio=row["sharing_ratio"] or 0.0,
        plan_seconds=row["plan_seconds"],
        model_spec=row["model_spec"] or model_spec_from_dir(model_dir).name,
        hardware=row["hardware"],
        n_warmup=row["n_warmup"] or 0,
        admission=AdmissionKind(row["admission"] or AdmissionKind.IN_ORDER),
        engine=plan_row_settings(row),
        estimate_sources=dict(row["estimate_sources"] or {}),
        bounds=None
        if row["t_seq_makespan_s"] is None
        else EstimatedBounds(row["t_seq_makespan_s"], row["optimal_makespan_s"], None),
    )


__all__ = [
    "PipelineOptions",
    "PipelineReport",
    "StageRunner",
    "UnfinishedRun",
    "call_stage",
    "pipeline_input",
    "run_pipeline",
    "stored_plan_report",
]
