"""Capacity planning: `blend capacity` on a seeded store, and the pieces it is made of."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.workloads.families import draw_instance
from bench.workloads.generators import default_cost
from blend.cli import app
from blend.cost.model import load_hardware
from blend.plan.capacity import (
    UNFITTED_STEP_ERROR,
    CapacityError,
    deadline_after,
    engine_counts,
    length_error,
    predict_capacity,
    prediction_workload,
    sample_by_group,
    sample_engines,
    step_model_error,
)
from blend.planners import LengthHint, OutputEstimates, PlanRequest, estimate_outputs
from blend.planners.estimates import EstimateSource
from blend.store.database import Store
from tests.support.cli_text import flat
from tests.support.seeds import seed_groups

runner = CliRunner()
CLI = ["--model-spec", "llama-3.1-8b", "--hardware", "a100-80g"]


def test_capacity_reads_the_profile_and_names_the_engines_needed(tmp_path: Path) -> None:
    seed_groups(Store.open(tmp_path), "tok")
    result = runner.invoke(
        app,
        [
            *("capacity", "--dataset", "ds", "--deadline", "06:00", "--start", "05:00", *CLI),
            *("--max-engines", "4", "--json", "--store", str(tmp_path)),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["n_requests"] == 2 * 12 and report["n_simulated"] == 24
    assert [p["k"] for p in report["predictions"]] == [1, 2, 4]
    assert report["available_s"] == 3600
    assert report["least_engines"] == 1  # 24 short requests take well under an hour
    # nothing measured: every request counts at its max_tokens, with no length spread
    assert report["n_at_max_tokens"] == 24 and report["length_error"] == 0
    h200 = step_model_error(load_hardware("h200")).relative
    assert report["band_relative"] == pytest.approx(h200)  # the a100 borrows the H200 fit
    for p in report["predictions"]:
        assert p["low_s"] < p["makespan_s"] < p["high_s"]


def test_capacity_prints_a_summary(tmp_path: Path) -> None:
    seed_groups(Store.open(tmp_path), "tok")
    result = runner.invoke(
        app, ["capacity", "--dataset", "ds", "--deadline", "06:00", *CLI, "--store", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "k=8:" in result.output and "needs 1 engine(s)" in result.output
    assert "band up to +-" in result.output and "upper bound" in result.output


def test_capacity_prices_engines_that_span_several_gpus(tmp_path: Path) -> None:
    """llama-3.1-70b does not fit one h100-80g (one GPU is priced as hetegen runs it, its
    layers split with the CPU); engines of 2 and 4 GPUs (tensor parallel) hold it whole, and
    the more GPUs an engine spans, the faster it runs the dataset."""
    seed_groups(Store.open(tmp_path), "tok")
    base = ["capacity", "--dataset", "ds", "--deadline", "06:00", "--start", "05:00"]
    base += ["--model-spec", "llama-3.1-70b", "--hardware", "h100-80g", "--max-engines", "1"]
    base += ["--json", "--store", str(tmp_path)]
    reports = {}
    for gpus in (1, 2, 4):
        result = runner.invoke(app, [*base, "--tensor-parallel-size", str(gpus)])
        assert result.exit_code == 0, result.output
        reports[gpus] = json.loads(result.output)
    assert reports[4]["gpus_per_engine"] == 4 and reports[4]["hardware"] == "h100-80g x4"
    assert reports[1]["gpus_per_engine"] == 1 and reports[1]["hardware"] == "h100-80g"
    run = {g: r["predictions"][0]["simulated_s"] for g, r in reports.items()}
    assert run[1] > run[2] > run[4]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope", "--deadline", "06:00"], "has no profile"),
        (["--dataset", "ds", "--deadline", "6h"], "expected a time of day HH:MM"),
        (["--dataset", "ds", "--deadline", "06:00", "--max-engines", "0"], "max-engines"),
    ],
)
def test_capacity_refuses_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    seed_groups(Store.open(tmp_path), "tok")
    result = runner.invoke(app, ["capacity", *args, *CLI, "--store", str(tmp_path)])
    assert result.exit_code == 1
    assert message in result.output


def test_capacity_refuses_a_bad_name_and_an_empty_store_without_creating_one(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    args = ["--deadline", "06:00", *CLI, "--store", str(store)]
    bad = runner.invoke(app, ["capacity", "--dataset", "x'; drop", *args])
    assert bad.exit_code == 2 and "invalid dataset name" in flat(bad.output)
    empty = runner.invoke(app, ["capacity", "--dataset", "ds", *args])
    assert empty.exit_code == 1 and "no database" in empty.output
    assert not store.exists()


def test_the_deadline_is_the_next_such_time_of_day() -> None:
    evening = datetime(2026, 11, 30, 22, 15, tzinfo=UTC)
    assert deadline_after(evening, "06:00") == datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    assert deadline_after(evening, "23:00") == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    with pytest.raises(CapacityError, match="25:00"):
        deadline_after(evening, "25:00")


def test_engine_counts_double_up_to_the_limit() -> None:
    assert engine_counts(8) == [1, 2, 4, 8]
    assert engine_counts(6) == [1, 2, 4, 6]
    assert engine_counts(1) == [1]


def test_step_model_error_comes_from_the_calibration_source() -> None:
    assert step_model_error(load_hardware("h200")).relative == pytest.approx(0.034)
    assert step_model_error(load_hardware("cpu-local")).relative == pytest.approx(0.156)
    borrowed = step_model_error(load_hardware("a100-80g"))
    assert borrowed.relative == pytest.approx(0.034) and "h200" in borrowed.basis
    unfitted = replace(load_hardware("h200"), source="datasheet")
    assert step_model_error(unfitted).relative == UNFITTED_STEP_ERROR


def _estimates(tokens: list[float], spread: list[float]) -> OutputEstimates:
    n = len(tokens)
    return OutputEstimates(
        np.asarray(tokens),
        [EstimateSource.WARMUP] * n,
        np.ones(n, bool),
        ["g"] * n,
        np.asarray(spread),
    )


def test_length_error_is_the_relative_standard_error_of_the_total() -> None:
    assert length_error(_estimates([100.0, 300.0], [0.0, 0.0])) == 0.0
    one = length_error(_estimates([100.0], [0.5]))
    assert one == pytest.approx(np.sqrt(np.expm1(0.25)))
    # many independent requests: the total is known far better than any one of them
    assert length_error(_estimates([100.0] * 100, [0.5] * 100)) == pytest.approx(one / 10)


def test_the_prediction_runs_on_estimates_never_on_true_lengths() -> None:
    requests = [PlanRequest(f"r{i}", [1, 2, i + 3], 50) for i in range(4)]
    hints = [LengthHint([1, 2, 99], 20, EstimateSource.HISTORY)]
    estimates = estimate_outputs(requests, hints)
    workload = prediction_workload(requests, estimates)
    assert [r.output_len for r in workload.requests] == [20] * 4
    capped = prediction_workload(requests, _estimates([80.0, 0.2, 7.4, 7.6], [0.0] * 4))
    assert [r.output_len for r in capped.requests] == [50, 1, 7, 8]


def test_a_sample_takes_the_same_share_of_every_prefix_group() -> None:
    keys = ["a"] * 600 + ["b"] * 300 + [f"single{i}" for i in range(100)]
    estimates = OutputEstimates(
        np.ones(1000), [EstimateSource.MAX_TOKENS] * 1000, np.zeros(1000, bool), keys
    )
    chosen, fraction = sample_by_group(estimates, 500, seed=1)
    assert fraction == len(chosen) / 1000
    assert 0.45 < fraction < 0.55
    picked = [keys[i] for i in chosen]
    assert picked.count("a") == 300 and picked.count("b") == 150
    whole, one = sample_by_group(estimates, 1000)
    assert one == 1.0 and np.array_equal(whole, np.arange(1000))


def test_more_engines_are_needed_for_a_tighter_deadline() -> None:
    family = draw_instance("dolly", 300, 2).workload
    requests = [
        PlanRequest(r.request_id, r.prompt_token_ids, limit or 512)
        for r, limit in zip(family.requests, family.max_tokens, strict=True)
    ]
    estimates = estimate_outputs(requests)
    cost = default_cost()
    start = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
    loose = predict_capacity(
        requests, estimates, cost, start=start, deadline=start + timedelta(days=1), max_engines=2
    )
    one, two = (p.makespan_s for p in loose.predictions)
    assert two < one and loose.least_engines == 1
    between = start + timedelta(seconds=(one + two) / 2)
    tight = predict_capacity(
        requests, estimates, cost, start=start, deadline=between, max_engines=2
    )
    assert tight.least_engines == 2
    assert [p.makespan_s for p in tight.predictions] == [one, two]  # deterministic


def test_outputs_are_drawn_around_their_estimates() -> None:
    n = 4000
    estimates = _estimates([200.0] * n, [0.8] * n)
    requests = [PlanRequest(f"r{i}", [1, i + 2], 100_000) for i in range(n)]
    drawn = prediction_workload(requests, estimates, seed=3)
    lengths = np.array([r.output_len for r in drawn.requests], dtype=float)
    assert lengths.mean() == pytest.approx(200, rel=0.05)  # the estimate is the mean
    assert np.log(lengths).std() == pytest.approx(0.8, rel=0.05)
    assert lengths.max() > 3 * 200  # the long outputs a makespan depends on
    fixed = prediction_workload(requests, estimates, seed=None)
    assert {r.output_len for r in fixed.requests} == {200}


def test_a_sample_runs_on_engines_with_the_share_one_of_k_would_have() -> None:
    assert sample_engines(8, 0.25) == 2  # each of 2 gets 1/8 of everything, as one of 8 would
    assert sample_engines(2, 0.25) == 1  # at least one (its makespan then scaled by 2)
    assert [sample_engines(k, 1.0) for k in (1, 2, 4, 8)] == [1, 2, 4, 8]


def test_capacity_defaults_to_the_demo_model_a_run_made(tmp_path: Path, tiny_model: Path) -> None:
    """Without --model or --model-spec, the cost model is the store's demo model (what `blend
    run` without --model ran); a store without one gets told what to name."""
    store = Store.open(tmp_path)
    seed_groups(store, "tok")
    args = ["capacity", "--dataset", "ds", "--deadline", "06:00", "--hardware", "a100-80g"]
    refused = runner.invoke(app, [*args, "--store", str(tmp_path)])
    assert refused.exit_code == 1
    assert "name a model spec (--model-spec) or a model folder (--model)" in refused.output
    store.models_dir.mkdir(parents=True, exist_ok=True)
    (store.models_dir / tiny_model.name).symlink_to(tiny_model, target_is_directory=True)
    result = runner.invoke(app, [*args, "--json", "--store", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["model"] == tiny_model.name
