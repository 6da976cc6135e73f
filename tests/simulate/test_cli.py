"""`blend simulate --json` and --plan-out on a small JSONL workload."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from blend.cli import app

KEYS = {
    "planner",
    "n_requests",
    "input_tokens",
    "output_tokens",
    "makespan_s",
    "throughput_tok_s",
    "optimal_makespan_s",
    "fraction_of_optimal",
    "prefix_sharing_ratio",
    "dfs_prefix_sharing_ratio",
    "plan_seconds",
    "compute_bound_s",
    "memory_bound_s",
    "overhead_s",
    "weight_read_s",
    "mean_batch_size",
    "n_preemptions",
}


@pytest.fixture
def workload(tmp_path: Path) -> Path:
    path = tmp_path / "requests.jsonl"
    rows = [
        {"request_id": f"t{i}", "prompt_token_ids": [1] * 40 + [i], "output_len": 5 + i}
        for i in range(6)
    ]
    rows.append({"request_id": "text", "prompt": "a shared text prompt " * 4, "output_len": 3})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _simulate(workload: Path, *extra: str) -> dict:
    args = ["simulate", "--requests", str(workload), "--model-spec", "llama-3.1-8b"]
    args += ["--hardware", "a100-80g", "--json", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_json_keys_and_plan_out(workload: Path, tmp_path: Path, suffix: str) -> None:
    plan_out = tmp_path / f"order{suffix}"
    data = _simulate(workload, "--planner", "dfs", "--plan-out", str(plan_out))
    assert data.keys() >= KEYS
    assert data["planner"] == "dfs" and data["n_requests"] == 7
    assert 0 < data["fraction_of_optimal"] <= 1
    assert data["output_tokens"] == sum(5 + i for i in range(6)) + 3
    table = pq.read_table(plan_out) if suffix == ".parquet" else pacsv.read_csv(plan_out)
    ids = table.column("request_id").to_pylist()
    assert sorted(ids) == sorted([f"t{i}" for i in range(6)] + ["text"])


def test_random_planner_and_engine_limits(workload: Path) -> None:
    data = _simulate(
        workload,
        "--planner",
        "random",
        "--seed",
        "3",
        "--max-num-seqs",
        "2",
        "--max-num-batched-tokens",
        "64",
        "--oracle-lengths",
    )
    assert data["planner"] == "random" and data["oracle_lengths"] is True
    assert (data["max_num_seqs"], data["max_num_batched_tokens"]) == (2, 64)


def test_blendserve_plan_is_replayed_with_its_step_budget(workload: Path) -> None:
    from blend.planners import StepBudgets, make_planner
    from blend.simulate.io import load_workload
    from blend.simulate.run import plan_requests

    visible = plan_requests(
        load_workload(workload), oracle_lengths=False, default_max_tokens=512, seed=0
    )
    planned = StepBudgets.from_params(make_planner("blendserve").plan(visible).params)
    assert planned.max_num_batched_tokens is not None
    replayed = _simulate(workload, "--planner", "blendserve")
    assert replayed["max_num_batched_tokens"] == planned.max_num_batched_tokens
    overridden = _simulate(workload, "--planner", "blendserve", "--max-num-batched-tokens", "999")
    assert overridden["max_num_batched_tokens"] == 999
    assert _simulate(workload, "--planner", "dfs")["max_num_batched_tokens"] == 8192


def test_bad_planner_and_bad_file(workload: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["simulate", "--model-spec", "llama-3.1-8b", "--hardware", "a100-80g", "--json"]
    result = runner.invoke(app, [*base, "--requests", str(workload), "--planner", "nope"])
    assert result.exit_code == 1 and "Unknown planner" in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"request_id": "x", "prompt_token_ids": [1, 2]}\n')
    result = runner.invoke(app, [*base, "--requests", str(bad), "--planner", "fcfs"])
    assert result.exit_code == 1 and "row 1: missing output_len" in result.output
