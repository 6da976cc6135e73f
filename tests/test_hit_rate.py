"""One prefix-cache hit rate (issue 18, item 5): `blend execute`'s summary, the Prefect
artifact and the run_summary view give the same number for one run - cached / prompt tokens
over the run's rows, not the engine's counter - and a run of prompts shorter than a KV cache
block says why nothing was cached."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import blend.engines.vllm_engine
import blend.execute.stage
from blend.cli import app
from blend.engines.tokenize import tokenizer_sha256
from blend.execute.setup import RunReport
from blend.plan.stage import PlanOptions, PlanReport, plan_dataset
from blend.store.database import Store
from blend.store.run_records import RunTotals
from flows.artifacts import run_table, summary_markdown
from tests.support.cli_text import flat
from tests.support.fake_engine import FakeEngine
from tests.support.seeds import seed_groups, seed_store


def execute_on_the_cli(
    store: Store, plan_id: str, model: Path, monkeypatch: pytest.MonkeyPatch, **fake: Any
) -> tuple[str, RunReport]:
    """`blend execute` with the fake engine (prefix cache on): its words and its report."""
    engine = functools.partial(FakeEngine, prefix_cache=True, **fake)
    monkeypatch.setattr(blend.engines.vllm_engine, "VllmEngine", engine)
    reports: list[RunReport] = []
    execute = blend.execute.stage.execute_plan

    def keep_report(*args: Any, **kwargs: Any) -> RunReport:
        reports.append(execute(*args, **kwargs))
        return reports[-1]

    monkeypatch.setattr(blend.execute.stage, "execute_plan", keep_report)
    args = ["execute", "--plan-id", plan_id, "--model", str(model), "--engine", "vllm"]
    result = CliRunner().invoke(app, [*args, "--store", str(store.root)])
    assert result.exit_code == 0, result.output
    return flat(result.stdout), reports[0]


def plan(store: Store, model: Path) -> PlanReport:
    return plan_dataset(
        store, "ds", PlanOptions(planner="dfs", warmup_fraction=0.0), model_dir=model
    )


def test_cli_artifact_and_view_give_one_hit_rate(
    store: Store, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two groups of 12 prompts (40 and 41 tokens, sharing all but the last); 16-token blocks:
    # every prompt but the first of its group finds 32 tokens cached. b5 is refused: an error
    # row, 0 cached, but the engine's counter looked it up (and found 32): 704 / 972.
    seed_groups(store, tokenizer_sha256(tiny_model))
    planned = plan(store, tiny_model)
    words, report = execute_on_the_cli(
        store, planned.plan_id, tiny_model, monkeypatch, refuse=frozenset({"b5"})
    )
    cached, prompt = (11 + 10) * 32, 12 * 40 + 12 * 41
    assert (report.cached_tokens, report.input_tokens) == (cached, prompt)
    rate = cached / prompt  # 0.691
    assert report.engine_prefix_cache_hit_rate == pytest.approx(704 / 972)

    shown = re.search(r"([\d,]+) cached \(hit rate ([\d.]+)%\)", words)
    assert shown is not None, words
    assert int(shown[1].replace(",", "")) == cached
    assert float(shown[2]) / 100 == pytest.approx(rate, abs=5e-4)

    assert run_table(report)[0]["prefix_cache_hit_rate"] == pytest.approx(rate, abs=5e-5)
    markdown = summary_markdown(planned, None, report)
    row = re.search(r"\| prefix_cache_hit_rate \| ([\d.]+) \|", markdown)
    assert row is not None and float(row[1]) == pytest.approx(rate, abs=5e-5)

    # the view as a user reads it: `blend query` (read-only, its views made for the session)
    sql = (
        "SELECT s.prefix_cache_hit_rate AS summary, r.prefix_cache_hit_rate AS runs, "
        "r.engine_prefix_cache_hit_rate AS engine FROM run_summary s JOIN runs r USING (run_id)"
    )
    query = ["query", sql, "--format", "json", "--store", str(store.root)]
    result = CliRunner().invoke(app, query)
    assert result.exit_code == 0, result.output
    [view] = json.loads(result.stdout)
    assert view["summary"] == pytest.approx(rate) and view["runs"] == pytest.approx(rate)
    assert view["engine"] == pytest.approx(704 / 972)  # kept apart, under its own name
    assert "0 cached" not in words and "Note:" not in markdown


def test_prompts_shorter_than_a_block_say_why_nothing_was_cached(
    store: Store, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a, b and d share [1, 2] (prefix sharing), but no prompt fills one 16-token block.
    seed_store(store, tokenizer_sha256(tiny_model))
    planned = plan(store, tiny_model)
    words, report = execute_on_the_cli(store, planned.plan_id, tiny_model, monkeypatch)
    assert report.cached_tokens == 0 and report.block_size == FakeEngine.BLOCK_SIZE
    why = "prompts no longer than the 16-token KV cache block cannot be reused"
    assert f"0 cached: {why}" in words
    assert "prefix caching reuses whole blocks only" in words
    assert "the longest prompt here has 4 tokens" in words  # "long" is an error row: not run
    assert why in flat(summary_markdown(planned, None, report))


def test_the_block_note_only_when_the_block_explains_it() -> None:
    def report(cached: int, longest: int | None, block: int | None) -> RunReport:
        totals = RunTotals(
            n_requests=2, input_tokens=20, cached_tokens=cached, max_prompt_tokens=longest
        )
        return RunReport(
            run_id="r",
            plan_id="p",
            dataset="ds",
            status="completed",
            totals=totals,
            engine_start_s=0.0,
            wall_s=1.0,
            results_dir=Path("/x"),
            n_skipped=0,
            block_size=block,
        )

    assert report(0, 16, 16).cache_note() is not None  # 16 tokens: the last one is computed
    assert report(0, 17, 16).cache_note() is None  # a whole block could have been reused
    assert report(4, 10, 16).cache_note() is None  # something was cached
    assert report(0, 10, None).cache_note() is None  # block size not known (Ray engines)
    assert report(0, None, 16).cache_note() is None  # nothing ran
