"""bench/gpu_microbench.py --smoke: every section runs its code path on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_microbench.py"
SECTIONS = ("model_step", "gemm", "attention", "hbm", "h2d", "cpu_gemm")


def test_smoke_run_writes_every_section_with_data_and_no_error(tmp_path: Path) -> None:
    out = tmp_path / "mb.json"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env.pop("OUT", None)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard, not a speed goal (those live in benchmarks)
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    result = json.loads(out.read_text())
    assert result["smoke"] is True
    assert result["schema_version"] == 1
    for key in ("device_name", "torch_version", "cuda_version", "sm_count", "total_memory_bytes"):
        assert key in result["env"], key
    assert list(result["sections"]) == list(SECTIONS)
    for name in SECTIONS:
        sec = result["sections"][name]
        assert sec["error"] is None, (name, sec.get("traceback"))
        assert sec["status"] == "ok", (name, sec["status"], sec.get("skipped"))
        timed = [p for p in sec["points"] if p.get("seconds") and "error" not in p]
        assert timed, f"{name}: no data point"
        assert all(p["seconds"] > 0 for p in timed)

    steps = result["sections"]["model_step"]["points"]
    assert {p["kind"] for p in steps} == {"overhead", "decode", "prefill", "mixed"}
    for p in steps:
        args = p["step_cost_args"]
        assert args["n_prefill_tokens"] + args["n_decode_seqs"] == p["tokens"]
        assert p["dense_flops"] > 0 and p["bytes"] > p["weight_bytes"] > 0
    gemm = result["sections"]["gemm"]["points"]
    assert all(p["flops_per_s"] and p["weight_bytes_per_s"] for p in gemm)
    assert "summary" not in result  # the summary goes to stdout
    assert "== model_step: ok" in proc.stdout


def test_sections_flag_runs_only_the_chosen_sections(tmp_path: Path) -> None:
    out = tmp_path / "mb.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--sections", "hbm,gemm", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert list(result["sections"]) == ["gemm", "hbm"]  # canonical order
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--sections", "nope", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "unknown sections" in bad.stderr
