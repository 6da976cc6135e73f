"""The `blend` CLI as a user runs it: stage commands, exit codes, the whole pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blend.cli import app
from blend.store.database import Store, fetch_dicts

runner = CliRunner()


def write_jsonl(path: Path, records: list[dict | str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ingest_prints_summary_and_exits_zero_with_some_rejects(tmp_path: Path) -> None:
    src = write_jsonl(
        tmp_path / "in.jsonl", [{"id": "a", "prompt": "hello there"}, "{not json", {"id": "b"}]
    )
    result = runner.invoke(app, ["ingest", str(src), "--dataset", "d", "--store", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "1 prompts, 2 rejected" in result.output
    assert "malformed JSON" in result.output
    assert "missing prompt" in result.output


def test_ingest_exits_non_zero_when_nothing_can_be_read(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "bad.jsonl", ["{nope", '{"id": 1}'])
    result = runner.invoke(app, ["ingest", str(src), "--dataset", "d", "--store", str(tmp_path)])
    assert result.exit_code == 1
    assert "bad.jsonl" in result.output


def test_ingest_says_that_body_model_is_not_used(tmp_path: Path) -> None:
    def line(i: int, model: str | None) -> dict:
        body: dict = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
        if model is not None:
            body["model"] = model
        return {"custom_id": f"r{i}", "url": "/v1/chat/completions", "body": body}

    models = ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o", None]
    src = write_jsonl(tmp_path / "batch.jsonl", [line(i, m) for i, m in enumerate(models)])
    result = runner.invoke(app, ["ingest", str(src), "--dataset", "d", "--store", str(tmp_path)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "4 prompts, 0 rejected" in said
    assert "3 lines name a model in body.model (gpt-4o-mini x 2, gpt-4o x 1)" in said
    assert "the run's model (--model) instead" in said


def test_plan_before_profile_names_the_fix(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "--dataset", "nope", "--store", str(tmp_path)])
    assert result.exit_code == 1
    assert "blend profile --dataset" in result.output


def test_query_prints_rows_and_reports_sql_errors(tmp_path: Path) -> None:
    with Store.open(tmp_path).connect():  # a query reads an existing store, never creates one
        pass
    ok = runner.invoke(app, ["query", "SELECT 41 + 1 AS answer", "--store", str(tmp_path)])
    assert ok.exit_code == 0
    assert "answer" in ok.output and "42" in ok.output
    bad = runner.invoke(app, ["query", "SELEC 1", "--store", str(tmp_path)])
    assert bad.exit_code == 1
    assert "query failed" in bad.output


@pytest.mark.engine
def test_run_whole_pipeline_on_the_real_engine(tmp_path: Path, tiny_model: Path) -> None:
    shared = "You answer questions about the Python language reference. " * 30
    records: list[dict | str] = [
        {
            "custom_id": f"q{i}",
            "prompt": f"{shared}\nQuestion {i}: what is a lambda?",
            "max_tokens": 6,
        }
        for i in range(6)
    ]
    records.append({"custom_id": "chat", "messages": [{"role": "user", "content": "hi"}]})
    src = write_jsonl(tmp_path / "nightly.jsonl", records)
    store_dir = tmp_path / "store"
    result = runner.invoke(
        app, ["run", str(src), "--store", str(store_dir), "--model", str(tiny_model)]
    )
    assert result.exit_code == 0, result.output
    assert "stage wall time" in result.output
    with Store.open(store_dir).connect() as con:
        rows = fetch_dicts(
            con,
            "SELECT request_id, n_output_tokens, n_cached_tokens, error FROM results ORDER BY seq",
        )
    assert sorted(r["request_id"] for r in rows) == sorted(["chat"] + [f"q{i}" for i in range(6)])
    assert all(r["error"] is None for r in rows)
    assert {r["n_output_tokens"] for r in rows if r["request_id"] != "chat"} <= set(range(1, 7))
    assert sum(r["n_cached_tokens"] for r in rows) >= 5 * 128  # shared prefix blocks reused
    again = runner.invoke(
        app, ["run", str(src), "--store", str(store_dir), "--model", str(tiny_model)]
    )
    assert again.exit_code == 0, again.output
    assert "nothing to execute" in again.output  # incremental: every prompt has its result
