"""The executor with a fake engine: plan order, error rows, atomic parts, resume, lineage."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from blend.engines.base import EngineConfig
from blend.execute import ExecuteError, ExecuteOptions, execute_plan
from blend.plan import plan_dataset
from blend.results import RESULT_SCHEMA, finished_parts, read_metadata
from blend.store import Store, fetch_dicts
from blend.tokenize import tokenizer_sha256
from tests.engines.fake_engine import FakeEngine

PROMPTS = {  # request_id -> token ids; "long" does not fit the fake engine's 64 tokens
    "a": [1, 2, 3],
    "b": [1, 2, 4],
    "c": [7, 8],
    "long": list(range(10, 80)),
    "d": [1, 2, 3, 9],
}


def seed_store(store: Store, tokenizer_hash: str) -> None:
    """Rows as ingest and profile would leave them, written directly."""
    with store.connect() as con:
        for line_no, (rid, ids) in enumerate(PROMPTS.items(), start=1):
            con.execute(
                "INSERT INTO prompts VALUES ('ds', 1, ?, ?, ?, ?, NULL, ?, 3)",
                [rid, line_no, f"sha-{rid}", f"prompt {rid}", '{"max_tokens": 3}'],
            )
            con.execute(
                "INSERT INTO prompt_tokens VALUES ('ds', 1, ?, ?, ?, ?)",
                [rid, tokenizer_hash, len(ids), ids],
            )
        con.execute(
            "INSERT INTO profiles (dataset, snapshot, tokenizer_sha256, model, max_model_len, "
            "profiled_at, n_prompts, input_tokens, n_over_length, unique_prefix_tokens) "
            "VALUES ('ds', 1, ?, 'tiny', 64, now(), 5, 82, 1, 0)",
            [tokenizer_hash],
        )


@pytest.fixture
def planned(store: Store, tiny_model: Path) -> tuple[Store, str, EngineConfig]:
    seed_store(store, tokenizer_sha256(tiny_model))
    plan = plan_dataset(store, "ds", "dfs", batch_size=2)
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
    options = ExecuteOptions(flush_rows=1)
    with pytest.raises(RuntimeError, match="engine died"):
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
        assert fetch_dicts(con, "SELECT count(*) AS n FROM results") == [{"n": 3}]
    resumed = FakeEngine(config)
    report = execute_plan(
        store, plan_id, config, run_id="run-x", engine_factory=lambda c: resumed, options=options
    )
    assert resumed.seen == ["c", "long"]
    assert (report.n_skipped, report.n_requests, report.status) == (3, 5, "completed")
    with store.connect() as con:
        counts = fetch_dicts(
            con, "SELECT count(*) AS n, count(DISTINCT request_id) AS d FROM results"
        )
    assert counts == [{"n": 5, "d": 5}]


def test_tokenizer_mismatch_is_refused(store: Store, tiny_model: Path) -> None:
    seed_store(store, "0" * 64)
    plan = plan_dataset(store, "ds", "fcfs")
    with pytest.raises(ExecuteError, match="profile and plan the dataset with this model"):
        execute_plan(
            store, plan.plan_id, EngineConfig(model_dir=tiny_model), engine_factory=FakeEngine
        )


def test_unknown_plan(store: Store, tiny_model: Path) -> None:
    with pytest.raises(ExecuteError, match="no plan 'nope'"):
        execute_plan(store, "nope", EngineConfig(model_dir=tiny_model), engine_factory=FakeEngine)
