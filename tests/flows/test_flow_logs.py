"""The stages' lines (what `blend run` prints) in the flow run's log, read back through the
Prefect API: ingest counts, the profile, the plan id, the execute progress and summary, once
each. The engine is the deterministic stand-in (the stage lines do not depend on vLLM; the
real engine runs in test_pipeline_flow.py)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import Log
from prefect.logging.handlers import APILogWorker

from blend.demo.dataset import DemoSize, write_demo_dataset
from blend.pipeline.chain import PipelineReport
from flows.options import PlanningOptions
from flows.pipeline import PipelineOptions, pipeline_flow
from tests.support.fake_engine import FakeEngine

pytestmark = pytest.mark.prefect


def flow_run_logs(flow_run_id: UUID) -> list[Log]:
    """Every log of the flow run (its tasks' included), oldest first, once the queue is sent."""
    APILogWorker.drain_all(timeout=30)
    only_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        return client.read_logs(log_filter=only_run)


def test_the_stage_lines_reach_the_flow_runs_log(
    prefect_harness: None, tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import blend.engines.vllm_engine

    # the tiny model's context: only the over-length document is an error row
    monkeypatch.setattr(
        blend.engines.vllm_engine, "VllmEngine", lambda c: FakeEngine(c, max_model_len=1024)
    )
    input_path = write_demo_dataset(tmp_path / "nightly.jsonl", DemoSize.small(), seed=3)
    options = PipelineOptions(
        input_path=str(input_path),
        store=str(tmp_path / "store"),
        model=str(tiny_model),
        planning=PlanningOptions(warmup_fraction=0.0),
    )
    state = pipeline_flow(options, return_state=True)
    assert state.is_completed(), state
    report = state.result()
    assert isinstance(report, PipelineReport) and report.run is not None
    logs = flow_run_logs(state.state_details.flow_run_id)
    messages = [log.message for log in logs]

    def the_one(pattern: str) -> Log:
        found = [log for log in logs if re.search(pattern, log.message)]
        assert len(found) == 1, (pattern, messages)  # logged once, not twice
        return found[0]

    the_one(r"^ingest ingested: dataset 'nightly' snapshot 1 \(jsonl\): 34 prompts, 4 rejected$")
    the_one(r"^  rejected \d+ x malformed JSON$")
    the_one(r"^profile 34 prompts, [\d,]+ tokens; length mean ")
    too_long = the_one(r"^  1 prompts leave no room for output within max_model_len")
    assert too_long.level == logging.WARNING
    plan = the_one(rf"^plan {re.escape(report.plan.plan_id)}: dfs \(in-order admission\), 34 ")
    assert plan.task_run_id is None  # the flow's own log
    run = report.run
    summary = the_one(rf"^execute {re.escape(run.run_id)} completed: 34 rows \(1 errors\), ")
    assert summary.level == logging.INFO
    progress = [log for log in logs if log.message.startswith("execute: ")]
    assert progress, messages
    assert re.match(
        r"^execute: 34/34 rows \(100%\), [\d.,]+ rows/s, .*ETA 0 s$", progress[-1].message
    )
    assert all(log.task_run_id is not None for log in progress)  # the execute task's log
    # in stage order: ingest, profile, plan, execute
    order = [messages.index(log.message) for log in (plan, progress[-1], summary)]
    assert order == sorted(order)
