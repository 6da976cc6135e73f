"""The device bench's CPU smoke run, the profiler and `blend hetegen` commands, on tiny shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from typer.testing import CliRunner

from blend.cli import app
from blend.cost.model import load_model_spec
from blend.cost.offload.hardware_profile import HeteGenProfile
from blend.hetegen.profiler import ProfileOptions, measure_profile
from tests.support.cli_text import flat

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "hetegen_device.py"


def test_the_device_bench_dry_run_measures_every_mode_and_batch(tmp_path: Path) -> None:
    out = tmp_path / "h.json"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run-cpu", "--batches", "1", "4", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads(out.read_text())
    modes = [(p["batch"], p["mode"]) for p in result["points"]]
    assert modes == [(b, m) for b in (1, 4) for m in ("resident", "streaming", "hetegen")]
    for point in result["points"]:
        assert point["measured_step_s"] > 0 and point["predicted_step_s"] > 0
    hetegen = [p for p in result["points"] if p["mode"] == "hetegen"]
    assert all(0 < p["mean_alpha"] < 1 for p in hetegen)
    assert all(p["resident_bytes"] <= result["gpu_budget_bytes"] for p in hetegen)
    assert HeteGenProfile.from_json(json.dumps(result["profile"])).cpu_weights_per_s
    assert "hetegen/streaming" in run.stdout


def test_the_profiler_measures_every_batch_on_the_cpu() -> None:
    spec = load_model_spec("blend-tiny-llama")
    threads_before = torch.get_num_threads()
    options = ProfileOptions(batches=(1, 4), cpu_budget_s=0.1, threads=1)
    profile = measure_profile(spec, options, name="t")
    assert sorted(profile.cpu_weights_per_s) == [1, 4]
    shapes = {(p["in_features"], p["out_features"]) for p in profile.points}
    assert shapes == {(128, 128), (128, 64), (128, 352), (352, 128)}
    assert profile.cpu_threads == 1 and "blend-tiny-llama" in profile.source
    assert torch.get_num_threads() == threads_before  # restored


def test_profile_command_writes_a_loadable_profile(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    args = ["hetegen", "profile", "--out", str(out), "--model-spec", "blend-tiny-llama"]
    result = CliRunner().invoke(app, [*args, "--cpu-budget-s", "0.1", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert set(HeteGenProfile.load(out).cpu_weights_per_s) == {1, 2, 4, 8, 16, 32}


def test_target_and_place_commands_print_their_tables(tmp_path: Path) -> None:
    target = CliRunner().invoke(app, ["hetegen", "target"])
    assert target.exit_code == 0, target.output
    assert "llama-30b on a10-24g" in target.output and "no: KV" in target.output
    place = ["hetegen", "place", "--gpu-budget-gib", "0", "--model-spec", "blend-tiny-llama"]
    placed = CliRunner().invoke(app, place)
    assert placed.exit_code == 0, placed.output
    assert "lm_head" in placed.output and "│ resident" not in placed.output
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    refused = CliRunner().invoke(app, [*place, "--profile", str(bad)])
    assert refused.exit_code != 0 and "schema_version" in flat(refused.output)


def test_a_microbench_result_becomes_a_profile(tmp_path: Path) -> None:
    result = Path(__file__).resolve().parents[2] / "bench" / "data" / "gpu_microbench_h200.json"
    out = tmp_path / "h200.json"
    run = CliRunner().invoke(app, ["hetegen", "import-microbench", str(result), "--out", str(out)])
    assert run.exit_code == 0, run.output
    profile = HeteGenProfile.load(out)
    assert profile.has_gpu and profile.gpu_name == "NVIDIA H200"
    assert sorted(profile.cpu_weights_per_s) == [1, 4, 16, 32]
    assert sorted(profile.gpu_weights_per_s) == [1, 2, 4, 8, 16, 32]
    # a GPU GEMM beats the CPU's by far; a pinned copy runs at PCIe 5 speed (tens of GB/s)
    assert profile.gpu_s(1e9, 1) < profile.cpu_s(1e9, 1) / 10
    assert 20e9 < (profile.h2d_bytes_s or 0) < 100e9
    missing = CliRunner().invoke(app, ["hetegen", "import-microbench", str(out), "--out", "x"])
    assert missing.exit_code != 0 and "not a gpu_microbench result" in flat(missing.output)
