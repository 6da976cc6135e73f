"""The CPU step-model fit and the hardware-file writer, on synthetic step times (no engine)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from blend.calibration.cpu_fit import (
    BENCH_SHAPE,
    Fit,
    Sample,
    fit_step_model,
    model_spec,
    per_point,
)
from blend.calibration.hardware_file import HARDWARE_JSON, write_profile
from blend.cost.model import load_model_spec
from blend.demo.model import TinyModelShape


def _samples(overhead: float, flops: float, bandwidth: float, overlap: bool = True) -> list[Sample]:
    spec = model_spec(BENCH_SHAPE)
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
        seconds = overhead + (max(compute, memory) if overlap else compute + memory)
        samples.append(
            Sample(
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
    spec = model_spec(BENCH_SHAPE)
    fit = fit_step_model(_samples(0.002, 1e11, 5e9), spec)
    assert fit.step_overhead_s == pytest.approx(0.002, rel=1e-6)
    assert fit.flops == pytest.approx(1e11, rel=1e-6)
    assert fit.bandwidth == pytest.approx(5e9, rel=1e-6)
    assert fit.rel_max < 1e-6


def test_additive_fit_recovers_constants_the_overlap_fit_misses() -> None:
    spec = model_spec(BENCH_SHAPE)
    samples = _samples(0.001, 2e11, 4e9, overlap=False)
    additive = fit_step_model(samples, spec, overlap=False)
    assert not additive.overlap
    assert additive.flops == pytest.approx(2e11, rel=1e-6)
    assert additive.bandwidth == pytest.approx(4e9, rel=1e-6)
    assert additive.rel_max < 1e-6
    assert fit_step_model(samples, spec, overlap=True).rel_max > 1e-3


def test_per_point_picks_the_fastest_or_the_median_repeat() -> None:
    base = _samples(0.002, 1e11, 5e9)[0]
    repeats = [Sample(**{**asdict(base), "seconds": s, "wall_seconds": s}) for s in (0.3, 0.1, 0.2)]
    assert [s.seconds for s in per_point(repeats, "min")] == [0.1]
    assert [s.seconds for s in per_point(repeats, "median")] == [0.2]
    with pytest.raises(ValueError, match="pick"):
        per_point(repeats, "mean")


def test_write_profile_starts_a_new_file_with_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "new.json"
    write_profile(path, Fit(0.001, 2e11, 3e9, 0.1, 0.2, 3, 7, overlap=False), "fresh")
    entry = json.loads(path.read_text())["cpu-local"]
    assert entry["step_overhead_s"] == 0.001
    assert entry["overlap_compute_memory"] is False
    assert entry["mem_bytes"] == 2**30  # the default CPU KV memory of a new entry


def test_write_profile_touches_only_cpu_local(tmp_path: Path) -> None:
    path = tmp_path / "hardware.json"
    original = HARDWARE_JSON.read_text()
    path.write_text(original)
    fit = Fit(0.001, 2e11, 3e9, 0.1, 0.2, 3, 7)
    write_profile(path, fit, "test fit")
    written = json.loads(path.read_text())
    before = json.loads(original)
    assert {k: v for k, v in written.items() if k != "cpu-local"} == {
        k: v for k, v in before.items() if k != "cpu-local"
    }
    assert original.split('"cpu-local"')[0] == path.read_text().split('"cpu-local"')[0]
    assert written["cpu-local"]["peak_flops"] == 2e11
    assert written["cpu-local"]["source"] == "test fit"


def test_the_tiny_model_spec_matches_the_model_blend_builds() -> None:
    derived = asdict(model_spec(TinyModelShape()))
    stored = asdict(load_model_spec("blend-tiny-llama"))
    assert {k: v for k, v in stored.items() if k != "name"} == {
        k: v for k, v in derived.items() if k != "name"
    }
    assert derived["n_params"] == 893_568  # parameters of the saved safetensors, counted
