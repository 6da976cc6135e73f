"""OpenLineage run events of the execute stage: written with the file transport and parseable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blend.engines.base import EngineConfig
from blend.engines.supervisor import EngineFailedError, RestartPolicy
from blend.engines.tokenize import tokenizer_sha256
from blend.execute.stage import ExecuteOptions, execute_plan
from blend.plan.stage import PlanOptions, plan_dataset
from blend.store.database import Store
from blend.store.lineage import OPENLINEAGE_JOB, LineageEvents, openlineage_run_id
from tests.support.fake_engine import FakeEngine
from tests.support.seeds import seed_store


@pytest.fixture
def planned(store: Store, tiny_model: Path) -> tuple[Store, str, EngineConfig]:
    seed_store(store, tokenizer_sha256(tiny_model))
    options = PlanOptions(planner="dfs", batch_size=2, warmup_fraction=0.0)
    plan = plan_dataset(store, "ds", options, model_dir=tiny_model)
    return store, plan.plan_id, EngineConfig(model_dir=tiny_model)


def read_events(store: Store, run_id: str) -> list[dict]:
    path = store.root / "lineage" / f"{run_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_completed_run_writes_start_and_complete(planned) -> None:
    store, plan_id, config = planned
    report = execute_plan(
        store,
        plan_id,
        config,
        run_id="run-ol",
        engine_factory=FakeEngine,
        options=ExecuteOptions(deployment_name="nightly", flow_run_id="fr-9"),
    )
    events = read_events(store, report.run_id)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    start, complete = events
    assert start["run"]["runId"] == complete["run"]["runId"] == openlineage_run_id("run-ol")
    assert start["job"] == {"namespace": "blend", "name": OPENLINEAGE_JOB, "facets": {}}
    assert [(d["namespace"], d["name"]) for d in start["inputs"]] == [
        ("blend", f"{store.root}/ds@1")
    ]
    assert [(d["namespace"], d["name"]) for d in start["outputs"]] == [
        ("blend", str(report.results_dir))
    ]
    facet = start["run"]["facets"]["blend"]
    assert (facet["run_id"], facet["plan_id"], facet["planner"]) == ("run-ol", plan_id, "dfs")
    assert (facet["engine"], facet["deployment_name"], facet["flow_run_id"]) == (
        "fake",
        "nightly",
        "fr-9",
    )
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 5


def test_failed_run_writes_fail_with_the_error(planned) -> None:
    store, plan_id, config = planned
    with pytest.raises(EngineFailedError):
        execute_plan(
            store,
            plan_id,
            config,
            run_id="run-bad",
            engine_factory=lambda c: FakeEngine(c, crash_after=1),
            options=ExecuteOptions(restart_policy=RestartPolicy(max_restarts=0)),
        )
    events = read_events(store, "run-bad")
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    message = events[1]["run"]["facets"]["errorMessage"]["message"]
    assert message.startswith("EngineFailedError: the engine failed 1 times")


def test_off_writes_nothing_and_unknown_mode_is_refused(planned) -> None:
    store, plan_id, config = planned
    execute_plan(
        store,
        plan_id,
        config,
        run_id="run-quiet",
        engine_factory=FakeEngine,
        options=ExecuteOptions(openlineage="off"),
    )
    assert not (store.root / "lineage" / "run-quiet.jsonl").exists()
    with pytest.raises(ValueError, match="Unknown OpenLineage mode: 'kafka'"):
        LineageEvents("kafka", store.root, None, store.root)  # type: ignore[arg-type]
