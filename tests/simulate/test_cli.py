"""`blend simulate --json` and --plan-out on a small JSONL workload."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from blend.cli import app
from tests.support.cli_text import flat

KEYS = {
    "t_seq_makespan_s",
    "fraction_of_t_seq",
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
    "max_num_batched_tokens",
    "max_num_seqs",
    "fraction_of_peak_optimal",
    "merged_order_sharing_ratio",
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
    # T_seq (vLLM: attention after the GEMMs) is the tighter bound on this hardware profile
    assert data["optimal_makespan_s"] < data["t_seq_makespan_s"] <= data["makespan_s"]
    assert data["fraction_of_t_seq"] == data["t_seq_makespan_s"] / data["makespan_s"]
    terms = data["t_seq_gap"]
    parts = ("t_seq_s", "extra_steps_overhead_s", "extra_steps_weights_s", "extra_work_s")
    assert sum(terms[k] for k in (*parts, "uneven_steps_s")) == pytest.approx(data["makespan_s"])
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


def test_engine_settings_default_to_vllms_and_can_be_searched(workload: Path) -> None:
    # what the executor runs: vLLM's offline defaults on an A100, for every planner
    for planner in ("dfs", "blendserve"):
        data = _simulate(workload, "--planner", planner)
        assert (data["max_num_batched_tokens"], data["max_num_seqs"]) == (8192, 256)
        assert data["settings_source"] == "vllm-default"
    searched = _simulate(workload, "--planner", "blendserve", "--search-settings")
    assert searched["admission"] == "dual-scan"
    trials = searched["settings_search"]
    assert len(trials) >= 6
    best = min(trials, key=lambda t: t["makespan_s"])
    chosen = (searched["max_num_batched_tokens"], searched["max_num_seqs"])
    assert chosen == (best["max_num_batched_tokens"], best["max_num_seqs"])
    assert searched["feed"] == best["feed"]
    assert {t["feed"] for t in trials} == {
        "dual-scan",
        "dual-scan, unpaced",
        "in-order (depth-first fallback)",
    }
    assert searched["settings_search_note"].startswith("predicted")
    assert all(t["max_num_batched_tokens"] >= t["max_num_seqs"] for t in trials)  # vLLM starts
    overridden = _simulate(workload, "--planner", "dfs", "--max-num-batched-tokens", "999")
    assert (overridden["max_num_batched_tokens"], overridden["settings_source"]) == (
        999,
        "explicit",
    )


def test_bad_planner_and_bad_file(workload: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["simulate", "--model-spec", "llama-3.1-8b", "--hardware", "a100-80g", "--json"]
    result = runner.invoke(app, [*base, "--requests", str(workload), "--planner", "nope"])
    assert result.exit_code == 2 and "'nope' is not one of" in flat(result.output)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"request_id": "x", "prompt_token_ids": [1, 2]}\n')
    result = runner.invoke(app, [*base, "--requests", str(bad), "--planner", "fcfs"])
    assert result.exit_code == 1 and "row 1: missing output_len" in result.output
