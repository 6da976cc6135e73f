"""bench/calibrate.py's fit and profile writer, on synthetic step times (no engine)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import calibrate


def _samples(overhead: float, flops: float, bandwidth: float) -> list[calibrate.Sample]:
    spec = calibrate.model_spec(calibrate.BENCH_SHAPE)
    samples = []
    for kind, tokens, decodes, kv in [
        ("prefill", 4096, 0, 8192.0),
        ("prefill", 2048, 0, 4096.0),
        ("prefill", 512, 0, 1024.0),
        ("decode", 0, 1, 130.0),
        ("decode", 0, 8, 8 * 1026.0),
        ("decode", 0, 32, 32 * 1026.0),
        ("decode", 0, 32, 32 * 130.0),
    ]:
        compute = 2 * spec.n_params * (tokens + decodes) / flops
        memory = (spec.weight_bytes + kv * spec.kv_bytes_per_token) / bandwidth
        seconds = overhead + max(compute, memory)
        samples.append(
            calibrate.Sample(
                kind,
                f"{kind}{tokens}{decodes}{kv}",
                1,
                0,
                tokens,
                decodes,
                0.0,
                kv,
                seconds,
                seconds,
            )
        )
    return samples


def test_fit_recovers_known_constants() -> None:
    spec = calibrate.model_spec(calibrate.BENCH_SHAPE)
    fit = calibrate.fit_step_model(_samples(0.002, 1e11, 5e9), spec)
    assert fit.step_overhead_s == pytest.approx(0.002, rel=1e-6)
    assert fit.flops == pytest.approx(1e11, rel=1e-6)
    assert fit.bandwidth == pytest.approx(5e9, rel=1e-6)
    assert fit.rel_max < 1e-6


def test_write_profile_touches_only_cpu_local(tmp_path: Path) -> None:
    path = tmp_path / "hardware.json"
    original = calibrate.HARDWARE_JSON.read_text()
    path.write_text(original)
    fit = calibrate.Fit(0.001, 2e11, 3e9, 0.1, 0.2, 3, 7)
    calibrate.write_profile(path, fit, "test fit")
    written = json.loads(path.read_text())
    before = json.loads(original)
    assert {k: v for k, v in written.items() if k != "cpu-local"} == {
        k: v for k, v in before.items() if k != "cpu-local"
    }
    assert original.split('"cpu-local"')[0] == path.read_text().split('"cpu-local"')[0]
    assert written["cpu-local"]["peak_flops"] == 2e11
    assert written["cpu-local"]["source"] == "test fit"


def test_the_tiny_model_spec_matches_the_model_blend_builds() -> None:
    from dataclasses import asdict

    from blend.cost import load_model_spec
    from blend.demo.model import TinyModelShape

    derived = asdict(calibrate.model_spec(TinyModelShape()))
    stored = asdict(load_model_spec("blend-tiny-llama"))
    assert {k: v for k, v in stored.items() if k != "name"} == {
        k: v for k, v in derived.items() if k != "name"
    }
    assert derived["n_params"] == 893_568  # parameters of the saved safetensors, counted
