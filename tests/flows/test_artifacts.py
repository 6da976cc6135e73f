"""Artifact builders and the throttled progress artifact, without a Prefect server."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from blend.execute.stage import RunReport
from blend.plan.stage import PlanReport
from blend.planners.base import PlannerName
from blend.simulate.sequential_bound import EstimatedBounds
from blend.store.run_records import GroupEstimate, RunTotals
from flows import artifacts
from flows.artifacts import ProgressArtifact, artifact_key, run_table, summary_markdown

PLAN = PlanReport(
    plan_id="nightly-s2-dfs-0a1b2c3d",
    dataset="nightly",
    snapshot=2,
    planner=PlannerName.DFS,
    tokenizer_sha256="t" * 64,
    n_requests=3,
    n_batches=1,
    sharing_ratio=0.25,
    dfs_sharing_ratio=0.5,
    plan_seconds=0.0123,
    n_already_done=32,
)


def make_run(**changes: object) -> RunReport:
    fields: dict = dict(
        run_id="run-1",
        plan_id=PLAN.plan_id,
        dataset="nightly",
        status="completed",
        totals=RunTotals(
            n_requests=3,
            n_errors=1,
            input_tokens=300,
            output_tokens=100,
            cached_tokens=120,
            prefix_cache_hit_rate=0.4,
        ),
        engine_start_s=4.0,
        wall_s=8.0,
        results_dir=Path("/store/results/dataset=nightly/run_id=run-1"),
        n_skipped=0,
    )
    fields.update(changes)
    return RunReport(**fields)


def test_artifact_keys_are_lowercase_letters_digits_and_dashes() -> None:
    assert artifact_key("run", "Nightly_EU v2") == "blend-run-nightly-eu-v2"
    assert artifact_key("progress", "nightly-s1-dfs-08b49c12") == (
        "blend-progress-nightly-s1-dfs-08b49c12"
    )


def test_run_table_has_throughput_tokens_errors_and_hit_rate() -> None:
    [row] = run_table(make_run())
    assert {k: row[k] for k in ("requests", "errors", "prefix_cache_hit_rate")} == {
        "requests": 3,
        "errors": 1,
        "prefix_cache_hit_rate": 0.4,
    }
    assert (row["tokens_per_s"], row["output_tokens_per_s"]) == (50.0, 12.5)
    assert run_table(make_run(totals=RunTotals()))[0]["prefix_cache_hit_rate"] is None


def test_summary_names_the_plan_and_says_when_nothing_ran() -> None:
    text = summary_markdown(PLAN, None, None)
    for line in (
        "| planner | dfs |",
        "| requests | 3 |",
        "| already answered (left out) | 32 |",
        "| batches | 1 |",
        "| prefix sharing kept | 25.0% (prefix tree: 50.0%) |",
    ):
        assert line in text
    assert "Nothing to run: all 32 prompts already have a result" in text
    assert "| prefix_cache_hit_rate | 0.4 |" in summary_markdown(PLAN, None, make_run())
    assert "Output estimates" not in summary_markdown(PLAN, None, make_run())
    group = GroupEstimate("a1b2", "warmup", 12, 300.0, 280.0, 41.0, 300 / 280)
    text = summary_markdown(PLAN, None, make_run(estimates=[group]))
    assert "| a1b2 | 12 | warmup | 300 | 280 | 41 |" in text


def test_summary_shows_both_bounds_t_seq_first() -> None:
    bounded = dataclasses.replace(PLAN, bounds=EstimatedBounds(123.4, 56.7, 4096))
    text = summary_markdown(bounded, None, None)
    seq = text.index("| bound T_seq (vLLM), at the estimated lengths | 123.4 s |")
    opt = text.index("| bound T_opt (an overlapping engine), at the estimated lengths | 56.7 s |")
    assert seq < opt
    assert "bound T_seq" not in summary_markdown(PLAN, None, None)  # none known: none shown


def test_progress_updates_at_most_every_interval_and_on_the_last_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, float, str | None]] = []
    monkeypatch.setattr(
        artifacts,
        "create_progress_artifact",
        lambda progress, key=None, description=None: calls.append(("create", progress, key)),
    )
    monkeypatch.setattr(
        artifacts,
        "update_progress_artifact",
        lambda artifact_id, progress, description=None: calls.append(
            ("update", progress, description)
        ),
    )
    now = [0.0]
    progress = ProgressArtifact("plan-1", min_interval_s=2.0, clock=lambda: now[0])
    for done, t in [(1, 0.5), (2, 1.0), (3, 2.4), (4, 3.0), (5, 3.1)]:  # updates at 0.5, 3.0, last
        now[0] = t
        progress(done, 5, 10 * done)
    assert [(c[0], c[1]) for c in calls] == [
        ("create", 0.0),
        ("update", 20.0),
        ("update", 80.0),
        ("update", 100.0),
    ]
    assert calls[0][2] == "blend-progress-plan-1"
    assert calls[-1][2] == "5/5 requests, 50 output tokens, 16 output tok/s"


def test_summary_draws_the_prompt_length_chart() -> None:
    from blend.profile.stage import LengthBin

    bins = [LengthBin(0, 100, 4), LengthBin(100, 200, 1), LengthBin(300, 400, 2)]
    text = summary_markdown(PLAN, None, None, bins)
    chart = text.split("## Prompt lengths (tokens)")[1].split("```")[1].strip("\n").splitlines()
    assert chart == [
        "      0 - 100     " + "█" * 40 + " 4",
        "    100 - 200     " + "█" * 10 + " 1",
        "    300 - 400     " + "█" * 20 + " 2",
    ]


def test_summary_lists_the_request_classes_of_the_profile() -> None:
    from blend.control.classes import RequestClass
    from blend.profile.stage import ProfileReport

    profile = ProfileReport(
        *("nightly", 2, "t" * 64, "tiny", 1024, 3, 300, 100.0, 100.0, 100.0, 100.0, 100),
        *(0, (), 0, (), 300, 0.0, 16, 0, (), 0.1, 0.1),
        request_classes=(RequestClass(0, 2, 120.0, 4.0), RequestClass(1, 1, 60.0, 256.0)),
    )
    text = summary_markdown(PLAN, profile, None)
    assert "### Request classes" in text
    assert "| c0 | 2 | 120 | 4 |" in text and "| c1 | 1 | 60 | 256 |" in text
    assert "Request classes" not in summary_markdown(
        PLAN, dataclasses.replace(profile, request_classes=()), None
    )
