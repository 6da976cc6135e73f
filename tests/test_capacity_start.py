"""Capacity numbers a person can trust (issue 18, item 5): every makespan counts an engine
start - measured by the model's earlier runs where the store has them and the hardware is
this machine's, else estimated from the weight bytes and said so - and the report says when
the hardware it is priced for is not this machine's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

import blend.cost.machine
from blend.cli import app
from blend.cost.engine_start import (
    GPU_FIXED_START_S,
    WEIGHT_LOAD_BYTES_S,
    estimated_engine_start,
    measured_engine_start,
)
from blend.cost.machine import ThisMachine, check_hardware
from blend.cost.resolve import resolve_cost
from blend.plan.capacity import dataset_capacity
from blend.store.database import Store
from tests.support.cli_text import flat
from tests.support.seeds import seed_groups

runner = CliRunner()
CLI = ["--model-spec", "llama-3.1-8b", "--hardware", "a100-80g"]
START = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
NO_GPU = ThisMachine("cpu-local", "no GPU")
AN_A100 = ThisMachine("a100-80g", "NVIDIA A100-SXM4-80GB")


def add_run(store: Store, run_id: str, start_s: float, **counts: object) -> None:
    """A finished run of model sha 'm' whose engine starts took start_s seconds in all."""
    row = {
        "run_id": run_id,
        "plan_id": "p",
        "dataset": "ds",
        "snapshot": 1,
        "engine": "vllm",
        "engine_version": "0.32",
        "model": "llama",
        "model_sha256": "m",
        "params_json": "{}",
        "started_at": datetime.now(UTC),
        "finished_at": datetime.now(UTC),
        "status": "completed",
        "engine_start_s": start_s,
        "n_attempts": 1,
        "n_engine_restarts": 0,
        **counts,
    }
    columns = ", ".join(row)
    marks = ", ".join(f"${name}" for name in row)
    with store.connect(views=False) as con:
        con.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", row)


def capacity(store: Store, machine: ThisMachine, model_sha256: str | None = "m"):
    return dataset_capacity(
        store,
        "ds",
        resolve_cost("llama-3.1-8b", "a100-80g"),
        start=START,
        deadline=START + timedelta(hours=5),
        model_sha256=model_sha256,
        max_engines=2,
        machine=machine,
    )


def test_without_runs_the_start_is_estimated_from_the_weights_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_groups(Store.open(tmp_path), "tok")
    monkeypatch.setattr(blend.cost.machine, "this_machine", lambda: AN_A100)
    args = ["capacity", "--dataset", "ds", "--deadline", "06:00", *CLI]
    result = runner.invoke(app, [*args, "--json", "--store", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    weights = resolve_cost("llama-3.1-8b", "a100-80g").model.weight_bytes
    expected = GPU_FIXED_START_S + weights / WEIGHT_LOAD_BYTES_S  # about 38 s for 8B in bf16
    assert report["engine_start_s"] == pytest.approx(expected)
    assert report["engine_start_measured"] is False
    assert report["hardware_matches_machine"] is True
    for p in report["predictions"]:
        assert p["makespan_s"] == pytest.approx(expected + p["simulated_s"])
        assert p["simulated_s"] > 0
        assert p["low_s"] < p["makespan_s"] < p["high_s"]
    words = flat(runner.invoke(app, [*args, "--store", str(tmp_path)]).output)
    assert f"engine start: {expected:,.1f} s per engine, estimated, not measured" in words
    assert "GB of weights at 2 GB/s" in words
    assert "hardware:" not in words  # priced for this machine's hardware: nothing to say


def test_measured_starts_are_per_start_medians_of_the_models_runs(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    seed_groups(store, "tok")
    add_run(store, "r1", 12.0)
    add_run(store, "r2", 30.0, n_attempts=2, n_engine_restarts=1)  # 3 starts: 10 s each
    restarted = json.dumps({"restart_settings": {"max_num_seqs": 64}})
    add_run(store, "r3", 28.0, replan_json=restarted)  # the re-plan restarted: 2 starts
    add_run(store, "r4", 99.0, status="running")  # not finished: its starts are not summed
    add_run(store, "r5", 50.0, model_sha256="another model")
    report = capacity(store, AN_A100)
    start = report.engine_start
    assert start is not None and start.measured
    assert (start.seconds, start.low_s, start.high_s) == (12.0, 10.0, 14.0)
    assert "median of 3 runs of this model in this store: 10.0-14.0 s" in start.basis
    one = report.predictions[0]
    assert one.makespan_s == pytest.approx(12.0 + one.simulated_s)
    assert one.low_s < one.makespan_s and one.high_s - one.makespan_s > 2.0  # 14 s at most
    lines = report.summary()
    assert any(line.startswith("engine start: 12.0 s per engine, measured") for line in lines)
    # Runs on this machine say nothing about another one: estimated there, and said why.
    elsewhere = capacity(store, NO_GPU)
    assert elsewhere.engine_start is not None and not elsewhere.engine_start.measured
    # Without the model's hash (no --model), nothing measured can be matched to it.
    unmatched = capacity(store, AN_A100, model_sha256=None).engine_start
    assert unmatched is not None and not unmatched.measured


def test_a_prediction_for_other_hardware_says_so(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    seed_groups(store, "tok")
    report = capacity(store, NO_GPU)
    assert report.hardware_check is not None and not report.hardware_check.matches
    lines = report.summary()
    assert lines[1] == (
        "hardware: priced for a100-80g, but this machine has no GPU (it would be priced as "
        "cpu-local): the numbers are for a100-80g engines, not for running here"
    )
    assert report.to_json()["machine"] == "no GPU"
    assert report.to_json()["hardware_matches_machine"] is False
    here = capacity(store, AN_A100).hardware_check
    assert here is not None and here.matches and here.note() is None


def test_hardware_checks_and_estimates() -> None:
    unknown = check_hardware("h100-80g", ThisMachine(None, "NVIDIA L4"))
    assert not unknown.matches and "has NVIDIA L4 (no hardware spec fits it)" in str(unknown.note())
    assert check_hardware("h100-80g x2", ThisMachine("h100-80g", "NVIDIA H100")).matches
    cpu = estimated_engine_start(resolve_cost("llama-3.1-8b", "cpu-local"))
    gpu = estimated_engine_start(resolve_cost("llama-3.1-8b", "h100-80g"))
    assert cpu.seconds < gpu.seconds and not cpu.measured  # vLLM's CPU build: no CUDA graphs
    assert gpu.low_s < gpu.seconds < gpu.high_s
    assert measured_engine_start([], "anywhere") is None
    assert measured_engine_start([0.0, 8.0], "here") == measured_engine_start([8.0], "here")
