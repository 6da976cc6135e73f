"""The user views of sql/views: rows in (tables and Parquet parts) -> exact rows out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from blend.store.database import Store, fetch_dicts
from blend.store.results import ResultRow, run_dir, write_part

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def row(request_id: str, run_id: str, *, error: str | None = None, seq: int = 0) -> ResultRow:
    return ResultRow(
        dataset="ds",
        snapshot=1,
        request_id=request_id,
        seq=seq,
        prompt_sha256=f"sha-{request_id}",
        output_text=None if error else "out",
        output_token_ids=None if error else [5, 6],
        finish_reason="error" if error else "length",
        n_prompt_tokens=10,
        n_output_tokens=0 if error else 2,
        n_cached_tokens=4,
        error=error,
        run_id=run_id,
        plan_id="plan-1",
        model="tiny",
        model_sha256="m" * 64,
        tokenizer_sha256="t" * 64,
        sampling_json='{"max_tokens":2}',
        engine="vllm",
        engine_version="0.32.0",
        started_at=T0,
        finished_at=T0,
    )


def add_run(store: Store, run_id: str, status: str, finished_hour: int | None, **extra) -> None:
    finished = None if finished_hour is None else T0.replace(hour=finished_hour)
    values = {
        "run_id": run_id,
        "plan_id": "plan-1",
        "dataset": "ds",
        "snapshot": 1,
        "engine": "vllm",
        "engine_version": "0.32.0",
        "model": "tiny",
        "model_sha256": "m" * 64,
        "params_json": "{}",
        "started_at": T0,
        "finished_at": finished,
        "status": status,
        **extra,
    }
    with store.connect() as con:
        con.execute(
            f"INSERT INTO runs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
            list(values.values()),
        )


@pytest.fixture
def seeded(store: Store) -> Store:
    """Three runs of one plan: r1 finished first, r2 finished later, r3 killed (running)."""
    with store.connect() as con:
        con.execute(
            "INSERT INTO datasets VALUES ('ds', 1, 'in.jsonl', 'h', 'jsonl', ?, 2, 0)", [T0]
        )
        for line_no, rid in enumerate(["a", "b"], start=1):
            con.execute(
                "INSERT INTO prompts VALUES ('ds', 1, ?, ?, ?, 'p', NULL, '{}', 2)",
                [rid, line_no, f"sha-{rid}"],
            )
        con.execute(
            "INSERT INTO plans (plan_id, dataset, snapshot, planner, tokenizer_sha256, "
            "created_at, params_json, n_requests, n_batches, plan_seconds) "
            "VALUES ('plan-1', 'ds', 1, 'dfs', ?, ?, '{}', 2, 1, 0.1)",
            ["t" * 64, T0],
        )
    add_run(store, "r1", "completed", 1, wall_s=10.0, engine_start_s=2.0, engine_busy_s=7.0)
    add_run(store, "r2", "completed", 2, wall_s=4.0, engine_start_s=1.0, engine_busy_s=3.0)
    add_run(store, "r3", "running", None)
    parts = {
        "r1": [row("a", "r1"), row("b", "r1", seq=1)],
        "r2": [row("a", "r2"), row("b", "r2", error="prompt too long", seq=1)],
        "r3": [row("a", "r3")],
    }
    for run_id, rows in parts.items():
        write_part(run_dir(store.results_dir, "ds", run_id), rows, {}, 0)
    return store


def query(store: Store, text: str) -> list[dict]:
    with store.connect() as con:
        return fetch_dicts(con, text)


def test_latest_results_prefers_completions_from_the_latest_finished_run(seeded: Store) -> None:
    rows = query(seeded, "SELECT request_id, run_id, error FROM latest_results ORDER BY request_id")
    assert rows == [
        {"request_id": "a", "run_id": "r2", "error": None},  # r3 never finished
        {"request_id": "b", "run_id": "r1", "error": None},  # r2's row is an error
    ]


def test_run_summary(seeded: Store) -> None:
    rows = query(
        seeded,
        "SELECT run_id, status, n_planned, n_rows, n_errors, input_tokens, output_tokens, "
        "cached_tokens, prefix_cache_hit_rate, wall_s, throughput_tok_s, overhead_fraction "
        "FROM run_summary ORDER BY run_id",
    )
    assert rows == [
        {
            "run_id": "r1",
            "status": "completed",
            "n_planned": 2,
            "n_rows": 2,
            "n_errors": 0,
            "input_tokens": 20,
            "output_tokens": 4,
            "cached_tokens": 8,
            "prefix_cache_hit_rate": 0.4,
            "wall_s": 10.0,
            "throughput_tok_s": 2.4,
            "overhead_fraction": 0.125,
        },
        {
            "run_id": "r2",
            "status": "completed",
            "n_planned": 2,
            "n_rows": 2,
            "n_errors": 1,
            "input_tokens": 20,
            "output_tokens": 2,
            "cached_tokens": 8,
            "prefix_cache_hit_rate": 0.4,
            "wall_s": 4.0,
            "throughput_tok_s": 5.5,
            "overhead_fraction": 0.0,
        },
        {
            "run_id": "r3",
            "status": "running",
            "n_planned": 2,
            "n_rows": 1,
            "n_errors": 0,
            "input_tokens": 10,
            "output_tokens": 2,
            "cached_tokens": 4,
            "prefix_cache_hit_rate": 0.4,
            "wall_s": None,
            "throughput_tok_s": None,
            "overhead_fraction": None,
        },
    ]


def test_row_lineage_traces_rows_to_line_plan_run_and_file(seeded: Store) -> None:
    rows = query(
        seeded,
        "SELECT request_id, run_id, source_uri, line_no, prompt_sha256, planner, engine, model, "
        "run_status, file FROM row_lineage WHERE run_id = 'r1' ORDER BY request_id",
    )
    files = sorted(run_dir(seeded.results_dir, "ds", "r1").glob("part-*.parquet"))
    assert len(files) == 1
    common = {"run_id": "r1", "source_uri": "in.jsonl", "planner": "dfs", "engine": "vllm"}
    assert rows == [
        {
            **common,
            "request_id": "a",
            "line_no": 1,
            "prompt_sha256": "sha-a",
            "model": "tiny",
            "run_status": "completed",
            "file": str(files[0]),
        },
        {
            **common,
            "request_id": "b",
            "line_no": 2,
            "prompt_sha256": "sha-b",
            "model": "tiny",
            "run_status": "completed",
            "file": str(files[0]),
        },
    ]


def test_views_exist_and_are_empty_before_any_run(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "empty")
    for view in ("latest_results", "run_summary", "row_lineage", "result_files"):
        assert query(store, f"SELECT count(*) AS n FROM {view}") == [{"n": 0}]
