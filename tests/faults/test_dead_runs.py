"""Dead runs: a pipeline SIGKILLed during execute stays `running` only until someone looks:
it is marked `interrupted`, and a plain re-run continues it (no second run beside it, one row
per prompt); a run that is still alive is never executed by a second process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from blend.engines.base import EngineConfig
from blend.execute.stage import ExecuteError, execute_plan
from blend.pipeline.chain import PipelineOptions, PipelineReport, run_pipeline
from blend.plan.stage import PlanOptions
from blend.store import store_lock
from blend.store.database import Store, fetch_dicts
from blend.store.runs import RunBusyError, mark_dead_runs, unfinished_run
from tests.support.children import Child
from tests.support.fault_child import fake_engine_stages


def pipeline_args(store: Store, input_path: Path, model: Path, step_s: float) -> list[str]:
    return [
        *("pipeline", "--store", str(store.root), "--input", str(input_path)),
        *("--dataset", "d", "--model", str(model), "--step-s", str(step_s)),
    ]


def results_of(store: Store) -> list[dict]:
    with store.connect() as con:
        return fetch_dicts(
            con,
            "SELECT request_id, output_text, error, run_id FROM results ORDER BY request_id",
        )


def run_in_process(store: Store, input_path: Path, model: Path) -> PipelineReport:
    return run_pipeline(
        store,
        EngineConfig(model_dir=model),
        PipelineOptions(
            input_path=input_path,
            dataset="d",
            plan=PlanOptions(planner="dfs", warmup_fraction=0.0),
        ),
        run_stage=fake_engine_stages(0.0),
    )


def test_killed_run_is_marked_interrupted_and_a_plain_rerun_continues_it(
    spawn: Callable[..., Child], tmp_path: Path, tiny_model: Path, small_inputs: list[Path]
) -> None:
    store = Store.open(tmp_path / "store")
    child = spawn(*pipeline_args(store, small_inputs[0], tiny_model, step_s=0.05))
    child.wait_for("progress", at_least=10)
    child.kill()
    with store.connect(views=False) as con:
        killed = fetch_dicts(con, "SELECT run_id, plan_id, status FROM runs")
    assert [r["status"] for r in killed] == ["running"]  # what it said when it died
    rows_before = results_of(store)
    assert 0 < len(rows_before) < 34  # some parts were finished, not all

    assert mark_dead_runs(store) == [killed[0]["run_id"]]
    with store.connect(views=False) as con:
        marked = fetch_dicts(con, "SELECT status, interrupted_at IS NOT NULL AS when FROM runs")
    assert marked == [{"status": "interrupted", "when": True}]

    report = run_in_process(store, small_inputs[0], tiny_model)
    assert report.resumed_run == killed[0]["run_id"]
    assert report.run is not None and report.run.run_id == killed[0]["run_id"]
    assert report.run.n_skipped == len(rows_before)
    # the killed run's plan, read back (not planned again)
    assert (report.plan.plan_id, report.plan.n_requests) == (killed[0]["plan_id"], 34)
    assert report.plan.model_spec and report.plan.planner == "dfs"
    with store.connect(views=False) as con:
        runs = fetch_dicts(con, "SELECT run_id, status, n_attempts, n_requests FROM runs")
    assert runs == [
        {"run_id": killed[0]["run_id"], "status": "completed", "n_attempts": 2, "n_requests": 34}
    ]
    # the same rows as an uninterrupted pipeline on a fresh store
    fresh = Store.open(tmp_path / "fresh")
    run_in_process(fresh, small_inputs[0], tiny_model)
    strip = lambda rows: [{k: r[k] for k in ("request_id", "output_text", "error")} for r in rows]  # noqa: E731
    assert strip(results_of(store)) == strip(results_of(fresh))
    assert len(results_of(store)) == 34


def test_a_live_run_is_not_executed_by_a_second_process(
    spawn: Callable[..., Child],
    tmp_path: Path,
    tiny_model: Path,
    small_inputs: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = Store.open(tmp_path / "store")
    child = spawn(*pipeline_args(store, small_inputs[0], tiny_model, step_s=0.2))
    child.wait_for("progress", at_least=1)
    with store.connect(views=False) as con:
        run = fetch_dicts(con, "SELECT run_id, plan_id, snapshot, model_sha256 FROM runs")[0]
    assert mark_dead_runs(store) == []  # alive: its lock is held
    with pytest.raises(ExecuteError, match=rf"being executed by pid {child.pid}"):
        execute_plan(
            store, run["plan_id"], EngineConfig(model_dir=tiny_model), run_id=run["run_id"]
        )
    monkeypatch.setenv(store_lock.WAIT_ENV, "0")
    with pytest.raises(RunBusyError, match=rf"run {run['run_id']} is still being executed"):
        unfinished_run(store, "d", run["snapshot"], "dfs", run["model_sha256"])
    # without a limit, a plain re-run waits for it, then finds nothing left to do
    monkeypatch.delenv(store_lock.WAIT_ENV)
    said: list[str] = []
    assert (
        unfinished_run(store, "d", run["snapshot"], "dfs", run["model_sha256"], on_wait=said.append)
        is None
    )
    assert len(said) == 1
    assert said[0].startswith(f"run {run['run_id']} is being executed by pid {child.pid}")
    assert said[0].endswith("waiting for it to end")
    child.wait_for("done")
    child.finish()
    report = run_in_process(store, small_inputs[0], tiny_model)
    assert (report.run, report.resumed_run, report.plan.n_requests) == (None, None, 0)
