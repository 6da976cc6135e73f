"""The whole pipeline in one call: ingest -> profile -> plan -> execute, with stage timings.

The CLI's `blend run` uses this; flows/pipeline.py chains the same stage functions as Prefect
tasks instead, so that each stage shows up (and retries) on its own in the UI.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from blend.engines.base import EngineConfig
from blend.execute import ExecuteOptions, ProgressCallback, RunReport, execute_plan
from blend.ingest import IngestReport, ingest_file
from blend.lineage import model_sha256
from blend.plan import PlanOptions, PlanReport, plan_dataset
from blend.profile import ProfileReport, profile_dataset
from blend.store import Store

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PipelineReport:
    ingest: IngestReport
    profile: ProfileReport
    plan: PlanReport
    run: RunReport | None  # None when the plan had nothing left to run (incremental)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage (s)


def run_pipeline(
    store: Store,
    input_path: Path,
    dataset: str,
    engine_config: EngineConfig,
    *,
    plan_options: PlanOptions | None = None,
    incremental: bool = True,
    options: ExecuteOptions | None = None,
    progress: ProgressCallback | None = None,
    on_stage: Callable[[str, object], None] | None = None,
) -> PipelineReport:
    """Run every stage on `input_path`; `on_stage(name, report)` is called after each.

    With `incremental`, prompts that already have a result from this model and sampling are
    not planned again, and when nothing is left the engine is not started at all.
    """
    seconds: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], T]) -> T:
        started = time.perf_counter()
        result = fn()
        seconds[name] = time.perf_counter() - started
        if on_stage is not None:
            on_stage(name, result)
        return result

    ingested = timed("ingest", lambda: ingest_file(store, input_path, dataset))
    profiled = timed(
        "profile",
        lambda: profile_dataset(
            store, dataset, engine_config.model_dir, snapshot=ingested.snapshot
        ),
    )
    planned = timed(
        "plan",
        lambda: plan_dataset(
            store,
            dataset,
            plan_options,
            snapshot=ingested.snapshot,
            model_sha256=model_sha256(engine_config.model_dir),
            incremental=incremental,
            model_dir=engine_config.model_dir,
        ),
    )
    if planned.n_requests == 0:
        return PipelineReport(ingested, profiled, planned, None, seconds)
    run = timed(
        "execute",
        lambda: execute_plan(
            store, planned.plan_id, engine_config, options=options, progress=progress
        ),
    )
    return PipelineReport(ingested, profiled, planned, run, seconds)
