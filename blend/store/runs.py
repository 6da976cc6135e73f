"""Which runs are alive: the per-run process lock, dead runs, and what a re-run continues.

A run is executed by one process at a time, which holds `<run folder>/.lock` (fcntl.flock)
from before its row says `running` until after its row says how it ended. The kernel releases
the lock when the process dies, SIGKILL included, so a run whose row says `running` while its
lock is free is dead: `mark_dead_runs` marks it `interrupted` (with `interrupted_at`). A plain
re-run (`blend run`, the pipeline flow) continues the latest unfinished run of the same
dataset snapshot, planner and model (`unfinished_run`), through the executor's resume
(finished parts are kept, only the missing requests run: exactly one row each); a run that is
still alive is waited for, never executed by a second process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from blend.store import sql
from blend.store.database import Store, fetch_dicts
from blend.store.process_lock import LockHolder, LockTimeoutError, acquire, holder_if_held
from blend.store.store_lock import say_waiting, wait_limit_s

LOCK_NAME = ".lock"


class RunBusyError(Exception):
    """The run is being executed by another (live) process."""


def run_lock_path(directory: Path) -> Path:
    return directory / LOCK_NAME


def acquire_run_lock(directory: Path, run_id: str) -> int:
    """Take the run's lock without waiting; returns its fd (close it to release)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = run_lock_path(directory)
    try:
        return acquire(path, wait_s=0)
    except LockTimeoutError as exc:
        raise RunBusyError(
            f"run {run_id} is being executed by {exc.holder.describe()} (lock {path}): wait "
            "for it to end, it is not run twice"
        ) from None


def run_is_alive(results_uri: str | None) -> LockHolder | None:
    """The live process executing the run in `results_uri`, or None when there is none."""
    if not results_uri:
        return None
    return holder_if_held(run_lock_path(Path(results_uri)))


def mark_dead_runs(store: Store) -> list[str]:
    """Mark every `running` run whose process is gone as `interrupted`; returns their ids."""
    with store.connect(views=False) as con:
        running = fetch_dicts(con, sql.load("execute/running_runs"))
        dead = [r["run_id"] for r in running if run_is_alive(r["results_uri"]) is None]
        for run_id in dead:
            con.execute(sql.load("execute/mark_interrupted"), {"run_id": run_id})
    return dead


@dataclass(frozen=True, slots=True)
class UnfinishedRun:
    run_id: str
    plan_id: str
    status: str  # interrupted | failed (a live `running` one is waited for first)


def unfinished_run(
    store: Store,
    dataset: str,
    snapshot: int,
    planner: str,
    model_sha256: str,
    *,
    on_wait: Callable[[str], None] | None = None,
) -> UnfinishedRun | None:
    """The latest run of this dataset snapshot, planner and model that did not complete and
    that no process executes, once dead runs are marked; None when there is none.

    A live one (another process executes it) is waited for, saying so once through
    `on_wait` (default: stderr), up to $BLEND_STORE_WAIT_S seconds (RunBusyError after it).
    """
    params = {
        "dataset": dataset,
        "snapshot": snapshot,
        "planner": planner,
        "model_sha256": model_sha256,
    }
    while True:
        mark_dead_runs(store)
        with store.connect(views=False) as con:
            rows = fetch_dicts(con, sql.load("execute/latest_unfinished_pipeline_run"), params)
        if not rows:
            return None
        row = rows[0]
        if row["status"] != "running":
            return UnfinishedRun(row["run_id"], row["plan_id"], row["status"])
        _wait_for(row["run_id"], Path(row["results_uri"]), on_wait or say_waiting)


def _wait_for(run_id: str, directory: Path, on_wait: Callable[[str], None]) -> None:
    """Wait until the live process executing `run_id` lets its lock go."""

    def waiting(holder: LockHolder) -> None:
        on_wait(f"run {run_id} is being executed by {holder.describe()} — waiting for it to end")

    try:
        fd = acquire(run_lock_path(directory), wait_s=wait_limit_s(), on_wait=waiting)
    except LockTimeoutError as exc:
        raise RunBusyError(f"run {run_id} is still being executed: {exc}") from None
    os.close(fd)  # only waited: the run's next execution takes it again
