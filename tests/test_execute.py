"""The executor with a fake engine: plan order, error rows, atomic parts, resume, lineage."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from blend.engines.base import EngineConfig
from blend.engines.supervisor import EngineFailedError, RestartPolicy
from blend.engines.tokenize import tokenizer_sha256
from blend.execute.stage import ExecuteError, ExecuteOptions, execute_plan
from blend.plan.stage import PlanOptions, plan_dataset
from blend.store.database import Store, fetch_dicts
from blend.store.results import RESULT_SCHEMA, finished_parts, read_metadata
from tests.support.fake_engine import FakeEngine
from tests.support.seeds import seed_store


@pytest.fixture
def planned(store: Store, tiny_model: Path) -> tuple[Store, str, EngineConfig]:
    seed_store(store, tokenizer_sha256(tiny_model))
    options = PlanOptions(planner="dfs", batch_size=2, warmup_fraction=0.0)
    plan = plan_dataset(store, "ds", options, model_dir=tiny_model)
    return store, plan.plan_id, EngineConfig(model_dir=tiny_model)


def test_execute_writes_one_row_per_request_in_plan_order(planned) -> None:
    store, plan_id, config = planned
    engines: list[FakeEngine] = []

    def factory(cfg: EngineConfig) -> FakeEngine:
        engines.append(FakeEngine(cfg))
        return engines[-1]

    report = execute_plan(
        store, plan_id, config, engine_factory=factory, options=ExecuteOptions(flush_rows=2)
    )
    assert engines[0].seen == ["a", "d", "b", "c", "long"]  # DFS order of the token ids
    assert engines[0].closed
    assert (report.status, report.n_requests, report.n_errors) == ("completed", 5, 1)
    assert report.output_tokens == 4 * 3
    parts = finished_parts(report.results_dir)
    assert len(parts) == 3  # flushed every 2 rows
    assert not list(report.results_dir.glob(".tmp-*"))
    meta = read_metadata(parts[0])
    assert meta["blend.run_id"] == report.run_id
    assert meta["blend.plan_id"] == plan_id
    assert meta["blend.engine"] == "fake"
    assert len(meta["blend.model_sha256"]) == 64
    assert pq.read_schema(parts[0]).names == RESULT_SCHEMA.names
    with store.connect() as con:
        rows = fetch_dicts(con, "SELECT request_id, seq, error, run_id FROM results ORDER BY seq")
        run = fetch_dicts(con, "SELECT status, n_requests, n_errors FROM runs")
    assert [r["request_id"] for r in rows] == ["a", "d", "b", "c", "long"]
    assert [r["seq"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["error"] is not None for r in rows] == [False, False, False, False, True]
    assert {r["run_id"] for r in rows} == {report.run_id}
    assert run == [{"status": "completed", "n_requests": 5, "n_errors": 1}]


def test_crash_then_resume_gives_exactly_one_row_per_request(planned) -> None:
    store, plan_id, config = planned
    options = ExecuteOptions(flush_rows=1, restart_policy=RestartPolicy(max_restarts=0))
    with pytest.raises(EngineFailedError, match="engine died"):
        execute_plan(
            store,
            plan_id,
            config,
            run_id="run-x",
            engine_factory=lambda c: FakeEngine(c, crash_after=3),
            options=options,
        )
    with store.connect() as con:
        assert fetch_dicts(con, "SELECT status FROM runs") == [{"status": "failed"}]
        # three answers and the refusal of "long" (refused as it was handed over)
        assert fetch_dicts(con, "SELECT count(*) AS n FROM results") == [{"n": 4}]
    resumed = FakeEngine(config)
    report = execute_plan(
        store, plan_id, config, run_id="run-x", engine_factory=lambda c: resumed, options=options
    )
    assert resumed.seen == ["c"]
    assert (report.n_skipped, report.n_requests, report.status) == (4, 5, "completed")
    with store.connect() as con:
        counts = fetch_dicts(
            con, "SELECT count(*) AS n, count(DISTINCT request_id) AS d FROM results"
        )
    assert counts == [{"n": 5, "d": 5}]


def test_tokenizer_mismatch_is_refused(store: Store, tiny_model: Path) -> None:
    seed_store(store, "0" * 64)
    plan = plan_dataset(store, "ds", PlanOptions(planner="fcfs"), model_dir=tiny_model)
    with pytest.raises(ExecuteError, match="profile and plan the dataset with this model"):
        execute_plan(
            store, plan.plan_id, EngineConfig(model_dir=tiny_model), engine_factory=FakeEngine
        )


def test_unknown_plan(store: Store, tiny_model: Path) -> None:
    with pytest.raises(ExecuteError, match="no plan 'nope'"):
        execute_plan(store, "nope", EngineConfig(model_dir=tiny_model), engine_factory=FakeEngine)


def _run(planned, factory, **options):
    store, plan_id, config = planned
    return execute_plan(
        store, plan_id, config, engine_factory=factory, options=ExecuteOptions(**options)
    )


def _results(store: Store) -> list[dict]:
    with store.connect() as con:
        return fetch_dicts(
            con,
            "SELECT request_id, error, finish_reason, output_text FROM results ORDER BY seq",
        )


def test_engine_crash_is_retried_with_halved_budgets(planned) -> None:
    configs: list[EngineConfig] = []

    def factory(cfg: EngineConfig) -> FakeEngine:
        configs.append(cfg)
        return FakeEngine(cfg, oom_above=3)  # out of memory with more than 3 in flight

    planned = (planned[0], planned[1], EngineConfig(model_dir=planned[2].model_dir, max_num_seqs=4))
    report = _run(planned, factory, flush_rows=1, plan_budgets=False)
    # 5 in flight (2 x 4 seqs ahead) did not fit: half the budgets, half the 5 in flight
    assert [c.max_num_seqs for c in configs] == [4, 2]
    assert (report.status, report.n_requests, report.n_engine_restarts) == ("completed", 5, 1)
    rows = _results(planned[0])
    assert [r["request_id"] for r in rows] == ["a", "d", "b", "c", "long"]
    assert [r["error"] for r in rows][:4] == [None] * 4
    with planned[0].connect() as con:
        run = fetch_dicts(con, "SELECT n_engine_restarts, params_json FROM runs")[0]
    assert run["n_engine_restarts"] == 1


def test_request_failing_alone_becomes_error_row_and_run_goes_on(planned) -> None:
    engines: list[FakeEngine] = []

    def factory(cfg: EngineConfig) -> FakeEngine:
        engines.append(FakeEngine(cfg, poison=frozenset({"b"})))
        return engines[-1]

    planned = (planned[0], planned[1], EngineConfig(model_dir=planned[2].model_dir, max_num_seqs=2))
    report = _run(planned, factory, flush_rows=1, plan_budgets=False)
    assert report.status == "completed"
    rows = _results(planned[0])
    assert [r["request_id"] for r in rows] == ["a", "d", "b", "c", "long"]
    errors = {r["request_id"]: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"b", "long"}
    assert errors["b"] == (
        "engine failed 2 times with this request alone in flight: RuntimeError: poisoned step"
    )
    # 4 in flight -> 2 -> 1 isolate "b"; after its error row the budgets are restored
    assert [e.config.max_num_seqs for e in engines] == [2, 1, 1, 1, 2]
    assert report.n_engine_restarts == 4


def test_engine_that_keeps_failing_fails_the_run_resumably(planned) -> None:
    with pytest.raises(EngineFailedError, match="failed 3 times"):
        _run(
            planned,
            lambda c: FakeEngine(c, crash_after=0),
            restart_policy=RestartPolicy(max_restarts=2),
        )
    with planned[0].connect() as con:
        assert fetch_dicts(con, "SELECT status, n_engine_restarts FROM runs") == [
            {"status": "failed", "n_engine_restarts": 3}
        ]


def test_rows_are_flushed_on_time_while_the_engine_is_busy(planned) -> None:
    def factory(cfg: EngineConfig) -> FakeEngine:
        return FakeEngine(cfg, idle_steps=2, idle_step_s=0.04)

    report = _run(planned, factory, flush_rows=100, flush_seconds=0.05)
    # each answer is written during the idle steps after it, before the next one (the
    # refusal of "long", handed back with the first step, may share the first part); were
    # parts checked only when rows arrive, rows 1+2, 3+4 and 5 would share parts
    parts = finished_parts(report.results_dir)
    rows = [pq.ParquetFile(p).metadata.num_rows for p in parts]
    assert sum(rows) == 5 and len(rows) >= 4 and max(rows) <= 2


def test_plan_settings_are_used_unless_turned_off(planned) -> None:
    store, plan_id, _ = planned
    with store.connect() as con:
        con.execute(
            "UPDATE plans SET max_num_seqs = 3, max_num_batched_tokens = 512 WHERE plan_id = ?",
            [plan_id],
        )
    seen: list[EngineConfig] = []

    def factory(cfg: EngineConfig) -> FakeEngine:
        seen.append(cfg)
        return FakeEngine(cfg)

    _run(planned, factory)
    _run(planned, factory, plan_budgets=False)
    assert [(c.max_num_seqs, c.max_num_batched_tokens) for c in seen] == [(3, 512), (None, None)]


def test_resume_with_another_plan_is_refused(planned) -> None:
    store, plan_id, config = planned
    execute_plan(store, plan_id, config, run_id="run-r", engine_factory=FakeEngine)
    other = plan_dataset(store, "ds", PlanOptions(planner="fcfs"), model_dir=config.model_dir)
    with pytest.raises(ExecuteError, match=f"run run-r belongs to plan '{plan_id}'"):
        execute_plan(store, other.plan_id, config, run_id="run-r", engine_factory=FakeEngine)


def test_resume_picks_the_latest_unfinished_run(planned) -> None:
    store, plan_id, config = planned
    policy = RestartPolicy(max_restarts=0)
    with pytest.raises(EngineFailedError):
        execute_plan(
            store,
            plan_id,
            config,
            run_id="run-1",
            engine_factory=lambda c: FakeEngine(c, crash_after=2),
            options=ExecuteOptions(flush_rows=1, restart_policy=policy),
        )
    report = execute_plan(
        store, plan_id, config, engine_factory=FakeEngine, options=ExecuteOptions(resume=True)
    )
    # two answers and the refusal of "long" were written before the crash
    assert (report.run_id, report.n_skipped, report.n_requests) == ("run-1", 3, 5)
    with store.connect() as con:
        run = fetch_dicts(con, "SELECT status, n_attempts FROM runs")
    assert run == [{"status": "completed", "n_attempts": 2}]
    fresh = execute_plan(
        store, plan_id, config, engine_factory=FakeEngine, options=ExecuteOptions(resume=True)
    )
    assert fresh.run_id != "run-1" and fresh.n_skipped == 0


def test_a_run_executing_elsewhere_is_refused(planned) -> None:
    store, plan_id, config = planned
    lock_dir = store.results_dir / "dataset=ds" / "run_id=run-l"
    lock_dir.mkdir(parents=True)
    import fcntl

    with (lock_dir / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ExecuteError, match="being executed by another process"):
            execute_plan(store, plan_id, config, run_id="run-l", engine_factory=FakeEngine)


def test_parts_carry_lineage_metadata(planned) -> None:
    store, plan_id, config = planned
    report = execute_plan(
        store,
        plan_id,
        config,
        engine_factory=FakeEngine,
        options=ExecuteOptions(flow_run_id="fr-1", deployment_name="nightly"),
    )
    meta = read_metadata(finished_parts(report.results_dir)[0])
    assert meta["blend.deployment_name"] == "nightly"
    assert meta["blend.flow_run_id"] == "fr-1"
    assert meta["blend.planner"] == "dfs"
    assert meta["blend.engine_version"] == "0"
    assert len(meta["blend.tokenizer_sha256"]) == 64
    assert meta["blend.sampling_json"] == '[{"max_tokens":3}]'
    assert '"max_num_seqs":256' in meta["blend.engine_params_json"]
    assert "blend.git_revision" in meta


def test_failed_restart_is_retried_and_leftover_temporary_files_are_removed(planned) -> None:
    store, plan_id, config = planned
    calls: list[EngineConfig] = []

    def factory(cfg: EngineConfig) -> FakeEngine:
        calls.append(cfg)
        if len(calls) == 1:
            return FakeEngine(cfg, crash_after=2)
        if len(calls) == 2:
            return FakeEngine(cfg, start_error=MemoryError("no room for the KV cache"))
        return FakeEngine(cfg)

    leftover = store.results_dir / "dataset=ds" / "run_id=run-t" / ".tmp-part-00000-dead.parquet"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a part")
    report = execute_plan(
        store,
        plan_id,
        config,
        run_id="run-t",
        engine_factory=factory,
        options=ExecuteOptions(flush_rows=1),
    )
    assert not leftover.exists()
    assert [c.max_num_seqs for c in calls] == [256, 128, 64]
    assert (report.status, report.n_requests, report.n_engine_restarts) == ("completed", 5, 2)
    assert [r["request_id"] for r in _results(store)] == ["a", "d", "b", "c", "long"]


def test_a_request_the_engine_refuses_becomes_an_error_row_and_the_run_goes_on(planned) -> None:
    """A refusal (vLLM's validation errors, a prompt without room for output) comes back
    through the engine loop at once: one error row, no retry, every other request runs."""
    store = planned[0]
    engines: list[FakeEngine] = []

    def factory(cfg: EngineConfig) -> FakeEngine:
        engines.append(FakeEngine(cfg, refuse=frozenset({"b"})))
        return engines[-1]

    report = _run(planned, factory)
    assert len(engines) == 1  # a refusal is not an engine failure: no restart
    assert (report.status, report.n_requests, report.n_errors) == ("completed", 5, 2)
    rows = {r["request_id"]: r for r in _results(store)}
    assert sorted(rows) == ["a", "b", "c", "d", "long"]
    assert rows["b"]["error"] == "refused by the fake engine"
    assert rows["b"]["finish_reason"] == "error" and rows["b"]["output_text"] is None
    assert rows["long"]["error"].startswith("prompt too long")
    assert all(rows[r]["error"] is None for r in ("a", "c", "d"))
