"""The executor's warm-up: measured lengths re-plan the rest once, stored before it runs;
a resumed run reads the stored revision back; the engine restarts for searched settings."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from blend.engines.base import EngineConfig
from blend.engines.supervisor import EngineFailedError, RestartPolicy
from blend.engines.tokenize import tokenizer_sha256
from blend.execute.replan import ReplanReport
from blend.execute.stage import ExecuteOptions, execute_plan
from blend.plan.stage import PlanOptions, plan_dataset
from blend.store.database import Store, fetch_dicts
from tests.support.fake_engine import FakeEngine
from tests.support.seeds import seed_groups


@pytest.fixture
def blended(store: Store, tiny_model: Path) -> tuple[Store, str, EngineConfig]:
    seed_groups(store, tokenizer_sha256(tiny_model), per_group=16)
    options = PlanOptions(planner="blendserve", warmup_fraction=0.1, seed=3)
    plan = plan_dataset(store, "ds", options, model_dir=tiny_model)
    return store, plan.plan_id, EngineConfig(model_dir=tiny_model)


def revision(store: Store, run_id: str) -> list[dict]:
    with store.connect() as con:
        return fetch_dicts(
            con,
            "SELECT request_id, est_output_tokens, est_source FROM run_orders "
            "WHERE run_id = ? ORDER BY seq",
            [run_id],
        )


def test_the_rest_is_replanned_from_the_warmups_lengths(blended) -> None:
    store, plan_id, config = blended
    reports: list[ReplanReport] = []
    configs: list[EngineConfig] = []

    def factory(cfg: EngineConfig) -> FakeEngine:
        configs.append(cfg)
        return FakeEngine(cfg, max_model_len=1024)

    options = ExecuteOptions(flush_rows=4, on_replan=reports.append)
    report = execute_plan(store, plan_id, config, engine_factory=factory, options=options)
    assert (report.status, report.n_requests) == ("completed", 32)
    assert len(reports) == 1 and report.replan == reports[0]
    rows = revision(store, report.run_id)
    with store.connect() as con:
        n_warmup = fetch_dicts(con, "SELECT n_warmup FROM plans")[0]["n_warmup"]
        accuracy = fetch_dicts(
            con,
            "SELECT prefix_group, est_source, mean_estimate, mean_actual, n_requests "
            "FROM estimate_accuracy ORDER BY mean_actual",
        )
    # every request that had not run when it re-planned, each with its group's measured length
    assert len(rows) == 32 - n_warmup - reports[0].warmup_running
    assert {r["est_source"] for r in rows} == {"warmup"}
    assert {r["request_id"][0]: r["est_output_tokens"] for r in rows} == {"a": 3.0, "b": 9.0}
    # the view: estimate against actual per prefix group (the fake engine writes max_tokens)
    assert [(a["mean_estimate"], a["mean_actual"]) for a in accuracy] == [(3.0, 3.0), (9.0, 9.0)]
    # ... and the run's own summary, largest groups first
    summary = sorted((g.mean_estimate, g.mean_actual, g.n_requests) for g in report.estimates)
    assert summary == [(a["mean_estimate"], a["mean_actual"], a["n_requests"]) for a in accuracy]
    search = reports[0].settings_search
    assert search is not None and search.trials  # searched in simulation


def test_a_run_killed_after_its_replan_resumes_with_the_stored_order(blended) -> None:
    store, plan_id, config = blended
    policy = RestartPolicy(max_restarts=0)
    with pytest.raises(EngineFailedError):
        execute_plan(
            store,
            plan_id,
            config,
            run_id="run-k",
            engine_factory=lambda c: FakeEngine(c, 1024, crash_after=20),
            options=ExecuteOptions(flush_rows=1, restart_policy=policy),
        )
    first = revision(store, "run-k")
    assert first  # re-planned before the crash
    replans: list[dict] = []
    report = execute_plan(
        store,
        plan_id,
        config,
        run_id="run-k",
        engine_factory=lambda c: FakeEngine(c, 1024),
        options=ExecuteOptions(flush_rows=1, on_replan=replans.append),
    )
    assert replans == []  # not re-planned again: the stored revision was read back
    assert revision(store, "run-k") == first
    assert (report.status, report.n_requests, report.n_skipped) == ("completed", 32, 20)
    with store.connect() as con:
        counts = fetch_dicts(
            con, "SELECT count(*) AS n, count(DISTINCT request_id) AS d FROM results"
        )
    assert counts == [{"n": 32, "d": 32}]


def test_searched_settings_restart_the_engine_when_worth_it(blended) -> None:
    store, plan_id, config = blended
    with store.connect() as con:  # a plan that starts the engine one request at a time
        con.execute("UPDATE plans SET max_num_seqs = 1, max_num_batched_tokens = 1024")
    configs: list[EngineConfig] = []

    def factory(cfg: EngineConfig) -> FakeEngine:
        configs.append(cfg)
        return FakeEngine(cfg, max_model_len=1024)  # starts in no time: any gain is worth it

    reports: list[ReplanReport] = []
    options = ExecuteOptions(on_replan=reports.append)
    report = execute_plan(store, plan_id, config, engine_factory=factory, options=options)
    search, chosen = reports[0].settings_search, reports[0].restart_settings
    assert search is not None and chosen is not None
    assert search.restart and search.predicted_gain_s is not None and search.predicted_gain_s > 0
    assert chosen.max_num_seqs > 1  # many requests at a time beat one at a time
    assert [(c.max_num_batched_tokens, c.max_num_seqs) for c in configs] == [
        (1024, 1),
        (chosen.max_num_batched_tokens, chosen.max_num_seqs),
    ]
    assert report.settings is not None and report.settings.max_num_seqs == chosen.max_num_seqs
    # what is stored reads back as what was told
    with store.connect() as con:
        stored = fetch_dicts(con, "SELECT replan_json FROM runs")[0]["replan_json"]
    assert ReplanReport.from_json(orjson.loads(stored)) == reports[0]
    assert (report.status, report.n_requests, report.n_engine_restarts) == ("completed", 32, 0)
