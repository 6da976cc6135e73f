"""`blend export`: answers in input order, the latest per request or one run's, as the OpenAI
Batch output file, JSONL, Parquet or CSV; refusals named; nothing half written."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from blend.cli import app
from blend.engines.base import EngineConfig
from blend.engines.tokenize import tokenizer_sha256
from blend.execute.stage import execute_plan
from blend.plan.stage import PlanOptions, plan_dataset
from blend.store.database import Store, fetch_dicts
from blend.store.export import ExportError, ExportFormat, export_results
from tests.support.cli_text import flat
from tests.support.fake_engine import FakeEngine
from tests.support.seeds import PROMPTS, seed_store

INPUT_ORDER = list(PROMPTS)  # the seed's line order: a, b, c, long, d


@pytest.fixture
def two_runs(store: Store, tiny_model: Path) -> tuple[Store, str, str]:
    """Run 1 refuses "b" (an error row); run 2 answers it. "long" fails in both."""
    seed_store(store, tokenizer_sha256(tiny_model))
    options = PlanOptions(planner="dfs", batch_size=2, warmup_fraction=0.0)
    plan = plan_dataset(store, "ds", options, model_dir=tiny_model)
    config = EngineConfig(model_dir=tiny_model)
    first = execute_plan(
        store, plan.plan_id, config, engine_factory=lambda c: FakeEngine(c, refuse={"b"})
    )
    second = execute_plan(store, plan.plan_id, config, engine_factory=FakeEngine)
    return store, first.run_id, second.run_id


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _results(store: Store, run_id: str) -> dict[str, dict]:
    with store.connect() as con:
        rows = fetch_dicts(con, "SELECT * FROM results WHERE run_id = ?", [run_id])
    return {r["request_id"]: r for r in rows}


def test_the_openai_batch_file_answers_every_request_in_input_order(two_runs, tmp_path) -> None:
    store, first, second = two_runs
    out = tmp_path / "out.jsonl"
    report = export_results(store, "ds", out, ExportFormat.OPENAI_BATCH)
    lines = _lines(out)
    assert [line["custom_id"] for line in lines] == INPUT_ORDER
    assert (report.n_rows, report.n_errors) == (5, 1)  # "long" fails in every run
    by_id = {line["custom_id"]: line for line in lines}
    # "b": run 1's error row loses to run 2's completion
    answers = _results(store, second)
    for rid in ("a", "b", "c", "d"):
        line, answer = by_id[rid], answers[rid]
        assert line["error"] is None and line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert body["object"] == "text_completion"  # raw prompts: completions, not chat
        assert body["choices"][0]["text"] == answer["output_text"]
        assert body["choices"][0]["finish_reason"] == answer["finish_reason"]
        assert body["usage"]["completion_tokens"] == answer["n_output_tokens"] == 3
        assert body["usage"]["prompt_tokens"] == len(PROMPTS[rid])
    assert by_id["long"]["response"] is None
    assert by_id["long"]["error"]["message"].startswith("prompt too long")
    assert first != second


def test_one_runs_answers_and_the_result_columns_in_every_format(two_runs, tmp_path) -> None:
    store, first, _ = two_runs
    expected = _results(store, first)
    jsonl = export_results(store, "ds", tmp_path / "a.jsonl", ExportFormat.JSONL, run_id=first)
    rows = _lines(jsonl.path)
    assert [r["request_id"] for r in rows] == INPUT_ORDER
    assert {r["request_id"]: r["error"] for r in rows} == {
        rid: expected[rid]["error"] for rid in INPUT_ORDER
    }
    assert rows[1]["error"] == "refused by the fake engine" and jsonl.n_errors == 2
    assert {r["run_id"] for r in rows} == {first}
    parquet = export_results(
        store, "ds", tmp_path / "a.parquet", ExportFormat.PARQUET, run_id=first
    )
    csv = export_results(store, "ds", tmp_path / "a.csv", ExportFormat.CSV, run_id=first)
    texts = [r["output_text"] for r in rows]
    table = pq.read_table(parquet.path)
    assert table.column("request_id").to_pylist() == INPUT_ORDER
    assert table.column("output_text").to_pylist() == texts
    assert "model_sha256" in table.column_names and "is_chat" not in table.column_names
    table = pa_csv.read_csv(csv.path)  # CSV has no null: an error row's text reads back ""
    assert table.column("request_id").to_pylist() == INPUT_ORDER
    assert table.column("output_text").to_pylist() == [t or "" for t in texts]
    assert table.column_names == pq.read_schema(parquet.path).names


def test_nothing_to_export_is_one_clear_error_and_leaves_no_file(two_runs, tmp_path) -> None:
    store, _, _ = two_runs
    out = tmp_path / "out.jsonl"
    with pytest.raises(ExportError, match="no dataset 'other'"):
        export_results(store, "other", out, ExportFormat.JSONL)
    with pytest.raises(ExportError, match="run 'run-none' wrote no results"):
        export_results(store, "ds", out, ExportFormat.JSONL, run_id="run-none")
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl.tmp-*"))


def test_the_command_writes_the_file_and_refuses_an_unknown_format(two_runs, tmp_path) -> None:
    store, _, _ = two_runs
    out = tmp_path / "batch.jsonl"
    args = ["export", "--store", str(store.root), "--dataset", "ds", "--out", str(out)]
    done = CliRunner().invoke(app, [*args, "--format", "openai-batch"])
    assert done.exit_code == 0, done.output
    assert "5 answers (1 errors)" in flat(done.output)
    assert [line["custom_id"] for line in _lines(out)] == INPUT_ORDER
    refused = CliRunner().invoke(app, [*args, "--format", "xml"])
    assert refused.exit_code != 0 and "xml" in flat(refused.output)


def test_an_empty_file_before_any_run_and_nothing_left_in_the_stores_tmp(
    tmp_path, tiny_model
) -> None:
    """The picks go through a file in the store's tmp/ (a path with glob characters here)."""
    store = Store.open(tmp_path / "st[1]*re")
    seed_store(store, tokenizer_sha256(tiny_model))
    out = tmp_path / "out.parquet"
    before = export_results(store, "ds", out, ExportFormat.PARQUET)
    assert (before.n_rows, out.stat().st_size) == (0, 0)  # no run yet: an empty file
    plan = plan_dataset(store, "ds", PlanOptions(planner="dfs"), model_dir=tiny_model)
    execute_plan(store, plan.plan_id, EngineConfig(model_dir=tiny_model), engine_factory=FakeEngine)
    after = export_results(store, "ds", out, ExportFormat.PARQUET)
    assert pq.read_table(out).column("request_id").to_pylist() == INPUT_ORDER
    assert (after.n_rows, after.n_errors) == (5, 1)
    assert not list(store.tmp_dir.iterdir())  # the spill folder and its picks are gone


def test_a_chat_row_becomes_a_chat_completion() -> None:
    from datetime import UTC, datetime

    from blend.store.export import openai_batch_line

    row = {
        "request_id": "q1", "run_id": "run-1", "model": "m", "is_chat": True,
        "output_text": "hi", "finish_reason": "stop", "error": None,
        "n_prompt_tokens": 7, "n_output_tokens": 2, "n_cached_tokens": 4,
        "finished_at": datetime(2026, 12, 7, tzinfo=UTC),
    }  # fmt: skip
    body = openai_batch_line(row)["response"]["body"]
    assert body["object"] == "chat.completion"
    assert body["choices"] == [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}
    ]
    assert body["usage"]["total_tokens"] == 9 and body["created"] == 1796601600
