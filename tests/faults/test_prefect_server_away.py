"""The Prefect server going away mid-run: progress updates fail (after the client's retries),
the run does not; its data is in the store, complete."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from blend.engines.base import EngineConfig
from blend.execute.stage import ExecuteOptions, execute_plan
from blend.ingest import ingest_file
from blend.plan.stage import PlanOptions, plan_dataset
from blend.profile.stage import profile_dataset
from blend.store.database import Store, fetch_dicts
from flows.execute import BackgroundProgress
from tests.support.fake_engine import FakeEngine


class ServerGoneAfter:
    """A progress callback whose API is gone after `n_ok` updates: each later call hangs
    `hang_s` seconds (the client's retries), then raises."""

    def __init__(self, n_ok: int, hang_s: float) -> None:
        self.n_ok, self.hang_s = n_ok, hang_s
        self.delivered: list[int] = []
        self.failed = 0
        self.threads: set[str] = set()

    def __call__(self, done: int, total: int, output_tokens: int) -> None:
        self.threads.add(threading.current_thread().name)
        if len(self.delivered) >= self.n_ok:
            self.failed += 1
            time.sleep(self.hang_s)
            raise ConnectionError("[Errno 111] Connection refused")
        self.delivered.append(done)


def test_a_run_completes_while_the_prefect_api_is_gone(
    store: Store, tiny_model: Path, small_inputs: list[Path]
) -> None:
    ingest_file(store, small_inputs[0], "d")
    profile = profile_dataset(store, "d", tiny_model)
    plan = plan_dataset(store, "d", PlanOptions(warmup_fraction=0.0), model_dir=tiny_model)
    inner = ServerGoneAfter(n_ok=2, hang_s=0.3)
    with BackgroundProgress(inner, drain_s=2.0) as progress:
        report = execute_plan(
            store,
            plan.plan_id,
            EngineConfig(model_dir=tiny_model),
            options=ExecuteOptions(flush_rows=4, progress_interval_s=0.0),
            engine_factory=lambda c: FakeEngine(
                c, max_model_len=profile.max_model_len, idle_steps=1, idle_step_s=0.01
            ),
            progress=progress,
        )
    assert (report.status, report.n_requests) == ("completed", 34)
    assert len(inner.delivered) == 2 and inner.failed >= 1  # the API went away mid-run
    assert inner.failed < 34  # updates that found one in flight were dropped, not queued
    assert inner.threads == {"blend-progress_0"}  # never on the engine loop's thread
    with store.connect() as con:
        rows = fetch_dicts(con, "SELECT count(DISTINCT request_id) AS n FROM results")
        run = fetch_dicts(con, "SELECT status, n_requests FROM runs")
    assert rows == [{"n": 34}]
    assert run == [{"status": "completed", "n_requests": 34}]
