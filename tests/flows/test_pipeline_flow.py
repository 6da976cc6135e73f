"""End to end: the Prefect pipeline flow on the real vLLM CPU engine and the tiny local model."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from blend.demo.dataset import DemoSize, write_demo_dataset
from blend.store.database import Store, fetch_dicts
from blend.store.results import finished_parts, read_metadata
from flows.ingest import IngestOptions, ingest_flow
from flows.options import EngineOptions, PlanningOptions
from flows.pipeline import PipelineOptions, pipeline_flow

pytestmark = [pytest.mark.engine, pytest.mark.prefect]

LINEAGE_COLUMNS = [
    "request_id",
    "prompt_sha256",
    "run_id",
    "plan_id",
    "model",
    "model_sha256",
    "tokenizer_sha256",
    "sampling_json",
    "engine",
    "engine_version",
    "started_at",
    "finished_at",
]


def test_pipeline_flow_end_to_end(prefect_harness, tmp_path: Path, tiny_model: Path) -> None:
    input_path = write_demo_dataset(tmp_path / "nightly.jsonl", DemoSize.small(), seed=3)
    store_dir = tmp_path / "store"
    report = pipeline_flow(
        PipelineOptions(
            input_path=str(input_path),
            store=str(store_dir),
            model=str(tiny_model),
            planning=PlanningOptions(planner="dfs"),
            engine=EngineOptions(max_num_seqs=16),
        )
    )
    store = Store.open(store_dir)
    with store.connect() as con:
        n_prompts = fetch_dicts(con, "SELECT count(*) AS n FROM prompts")[0]["n"]
        rejects = fetch_dicts(con, "SELECT line_no, reason FROM rejects ORDER BY line_no")
        per_request = fetch_dicts(
            con,
            "SELECT count(*) AS n, count(DISTINCT request_id) AS d, "
            "count(*) FILTER (WHERE error IS NOT NULL) AS errors FROM results",
        )[0]
        missing = fetch_dicts(
            con,
            "SELECT request_id FROM prompts ANTI JOIN results USING (request_id)",
        )
        null_lineage = fetch_dicts(
            con,
            "SELECT count(*) AS n FROM results WHERE "
            + " OR ".join(f"{c} IS NULL" for c in LINEAGE_COLUMNS),
        )[0]["n"]
        errors = fetch_dicts(con, "SELECT request_id, error FROM results WHERE error IS NOT NULL")
        completed = fetch_dicts(
            con,
            "SELECT count(*) AS n FROM results WHERE error IS NULL AND n_output_tokens > 0",
        )[0]["n"]
        cached = fetch_dicts(con, "SELECT sum(n_cached_tokens) AS c FROM results")[0]["c"]
        run = fetch_dicts(con, "SELECT status, flow_run_id FROM runs")
    assert n_prompts == report.ingest.n_rows == 34
    assert len(rejects) == 4 == report.ingest.n_rejected
    assert {r["reason"].split(":")[0] for r in rejects} >= {"malformed JSON", "duplicate id"}
    assert per_request == {"n": n_prompts, "d": n_prompts, "errors": 1}
    assert missing == []
    assert null_lineage == 0
    assert errors[0]["request_id"] == "summarise-001"  # the over-length document
    assert "prompt too long" in errors[0]["error"]
    assert completed == n_prompts - 1
    assert cached > 0  # the shared few-shot and system prefixes hit the prefix cache
    assert run[0]["status"] == "completed"
    assert run[0]["flow_run_id"]
    parts = finished_parts(report.run.results_dir)
    assert parts
    meta = read_metadata(parts[0])
    assert meta["blend.run_id"] == report.run.run_id
    assert meta["blend.engine"] == "vllm"
    assert meta["blend.flow_run_id"] == run[0]["flow_run_id"]
    assert pq.ParquetFile(parts[0]).metadata.num_rows > 0


def test_failing_task_fails_its_flow(prefect_harness, tmp_path: Path) -> None:
    options = IngestOptions(
        input_path=str(tmp_path / "missing.jsonl"), dataset="x", store=str(tmp_path / "s")
    )
    state = ingest_flow(options, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=r"missing\.jsonl"):
        state.result()
