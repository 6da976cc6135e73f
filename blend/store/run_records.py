"""The lifecycle of a run's row in `runs`: started, resumed, re-planned, finished.

A run is one execution attempt of a plan and every resume of it (same run_id). Its row is
written when an execution starts and when it ends; the engine loop never holds the database
open in between (DuckDB allows one writing process).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from blend.store import sql
from blend.store.database import Store, fetch_dicts, run_parts_glob
from blend.store.lineage import RunLineage
from blend.store.memory import memory_capped

# DuckDB's memory for reading a finished run's parts back (bytes): the totals and the
# estimates' accuracy join every row of the run; past the cap they spill (uncapped, the join
# of 10M rows with the plan's items held ~9 GB at the end of a run that ran in 2 GB)
RUN_READ_MEMORY_BYTES = 1 << 30


class RunRecordError(Exception):
    """A run id cannot be used as asked (another plan's or another model's run)."""


def new_run_id() -> str:
    return f"run-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def run_id_exists(store: Store, run_id: str) -> bool:
    with store.connect(views=False) as con:
        return bool(fetch_dicts(con, sql.load("execute/run_by_id"), {"run_id": run_id}))


def latest_unfinished_run(store: Store, plan_id: str) -> str | None:
    """The most recently started run of `plan_id` that did not complete, if any."""
    with store.connect(views=False) as con:
        rows = fetch_dicts(con, sql.load("execute/latest_unfinished_run"), {"plan_id": plan_id})
    return rows[0]["run_id"] if rows else None


def check_resumable(store: Store, run_id: str, plan_id: str, model_hash: str) -> bool:
    """Whether `run_id` exists; refuses to resume it with another plan or model."""
    with store.connect(views=False) as con:
        rows = fetch_dicts(con, sql.load("execute/run_by_id"), {"run_id": run_id})
    if not rows:
        return False
    run = rows[0]
    if run["plan_id"] != plan_id:
        raise RunRecordError(
            f"run {run_id} belongs to plan {run['plan_id']!r}, not {plan_id!r}: resume it with "
            f"--plan-id {run['plan_id']}, or leave out the run id to start a new run"
        )
    if run["model_sha256"] != model_hash:
        raise RunRecordError(
            f"run {run_id} was started with model {run['model']!r} "
            f"(sha256 {run['model_sha256'][:12]}), but this model's files hash to "
            f"{model_hash[:12]}: resume it with the same model, or start a new run"
        )
    return True


def record_run_start(store: Store, lineage: RunLineage, directory: Path, *, resume: bool) -> None:
    with store.connect(views=False) as con:
        if resume:
            con.execute(
                sql.load("execute/resume_run"),
                {
                    "run_id": lineage.run_id,
                    "flow_run_id": lineage.flow_run_id,
                    "deployment_name": lineage.deployment_name,
                },
            )
            return
        con.execute(
            sql.load("execute/insert_run"),
            {
                "run_id": lineage.run_id,
                "plan_id": lineage.plan_id,
                "dataset": lineage.dataset,
                "snapshot": lineage.snapshot,
                "flow_run_id": lineage.flow_run_id,
                "deployment_name": lineage.deployment_name,
                "engine": lineage.engine,
                "engine_version": lineage.engine_version,
                "model": lineage.model,
                "model_sha256": lineage.model_sha256,
                "model_revision": lineage.model_revision,
                "params_json": lineage.engine_params_json,
                "results_uri": str(directory),
                "git_revision": lineage.git_revision,
            },
        )


@dataclass(frozen=True, slots=True)
class Execution:
    """One execution of a run, as it ended (the runs row sums the times over executions)."""

    status: str  # completed | failed
    engine_start_s: float  # engine (re)starts
    wall_s: float  # engine start included
    engine_busy_s: float  # inside the engine's calls
    n_engine_restarts: int  # engine failures survived by restarting
    # the engine's own counter (hits / queries), this execution: it also counts warm-up
    # requests run again after a restart and prompts recomputed after a preemption, so it is
    # not the run's hit rate (RunTotals.prefix_cache_hit_rate); kept for diagnosis
    engine_prefix_cache_hit_rate: float | None


@dataclass(frozen=True, slots=True)
class RunTotals:
    """A run's rows and tokens over all its parts (every execution of it)."""

    n_requests: int = 0
    n_errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    # cached_tokens / input_tokens, computed by the SQL macro prefix_cache_hit_rate (the one
    # definition, which the run_summary view uses too); None without prompt tokens
    prefix_cache_hit_rate: float | None = None
    max_prompt_tokens: int | None = None  # the longest prompt that ran (error rows left out)


def record_run_finish(
    store: Store, run_id: str, directory: Path, execution: Execution
) -> RunTotals:
    """Record the end of this execution and the run's totals (read from its parts)."""
    totals = RunTotals()
    with store.connect(views=False) as con, memory_capped(con, RUN_READ_MEMORY_BYTES):
        if any(directory.glob("part-*.parquet")):
            row = fetch_dicts(
                con, sql.load("results/run_totals"), {"glob": run_parts_glob(directory)}
            )[0]
            totals = RunTotals(**{f.name: _number(row[f.name]) for f in fields(RunTotals)})
        recorded = asdict(totals)
        del recorded["max_prompt_tokens"]  # for the report only: runs has no column for it
        con.execute(
            sql.load("execute/finish_run"), {"run_id": run_id, **asdict(execution), **recorded}
        )
    return totals


def _number(value: Any) -> Any:
    """A totals cell as Python: DuckDB's HUGEINT sums as int, the hit rate as float."""
    if value is None or isinstance(value, float):
        return value
    return int(value)


@dataclass(frozen=True, slots=True)
class GroupEstimate:
    """Estimated against actual output tokens of one prefix group of a run (warm-up excluded)."""

    prefix_group: str | None
    est_source: str | None  # the most common source of the group's estimates
    n_requests: int
    mean_estimate: float  # tokens
    mean_actual: float  # tokens
    mean_abs_error: float  # tokens
    estimate_over_actual: float | None


def estimate_accuracy(
    store: Store, run_id: str, directory: Path, limit: int = 5
) -> list[GroupEstimate]:
    """The run's largest prefix groups with their estimates against what ran (as the
    `estimate_accuracy` view has them), read from the run's parts in `directory` only."""
    if not any(directory.glob("part-*.parquet")):
        return []
    with store.connect(views=False) as con, memory_capped(con, RUN_READ_MEMORY_BYTES):
        rows = fetch_dicts(
            con,
            sql.load("execute/run_estimate_accuracy"),
            {"run_id": run_id, "limit": limit, "glob": run_parts_glob(directory)},
        )
    return [GroupEstimate(**r) for r in rows]
