"""The GPU step-model fit recovers the parameters of steps made with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blend.calibration.gpu_steps import GpuStepFit, MeasuredStep, fit_gpu_steps, load_model_steps

PEAK, BANDWIDTH = 1000e12, 5e12
TRUTH = GpuStepFit(0.003, 0.7, 0.85, 0.4, 2.5, 0.0, 0.0)
DATA = Path(__file__).resolve().parents[2] / "bench" / "data" / "gpu_microbench_h200.json"


def synthetic_steps() -> list[MeasuredStep]:
    steps = []
    for tokens in (1, 16, 64, 128, 256, 512, 1024, 4096):
        for kv_tokens in (0, 10_000, 200_000):
            steps.append(
                MeasuredStep(
                    f"{tokens} tokens, {kv_tokens} kv",
                    gemm_flops=2 * 8e9 * tokens,
                    prefill_attention_flops=4.0 * tokens * tokens / 2 * 4096 * 32,
                    weight_bytes=16e9,
                    kv_bytes=kv_tokens * 131072.0,
                    seconds=1.0,  # replaced below
                )
            )
    times = TRUTH.predict(steps, PEAK, BANDWIDTH)
    return [
        MeasuredStep(
            s.label, s.gemm_flops, s.prefill_attention_flops, s.weight_bytes, s.kv_bytes, t
        )
        for s, t in zip(steps, times, strict=True)
    ]


def test_the_fit_recovers_the_parameters_it_was_made_with() -> None:
    fit = fit_gpu_steps(synthetic_steps(), PEAK, BANDWIDTH)
    assert fit.overhead_s == pytest.approx(TRUTH.overhead_s, rel=1e-3)
    assert fit.flops_efficiency == pytest.approx(TRUTH.flops_efficiency, rel=1e-3)
    assert fit.bandwidth_efficiency == pytest.approx(TRUTH.bandwidth_efficiency, rel=1e-3)
    assert fit.attention_flops_efficiency == pytest.approx(
        TRUTH.attention_flops_efficiency, rel=1e-2
    )
    assert fit.roofline_sharpness == pytest.approx(TRUTH.roofline_sharpness, rel=1e-2)
    assert fit.rms_relative_error < 1e-6


def test_a_fixed_bandwidth_stays_fixed_and_too_few_steps_are_refused() -> None:
    fit = fit_gpu_steps(synthetic_steps(), PEAK, BANDWIDTH, bandwidth_efficiency=0.85)
    assert fit.bandwidth_efficiency == 0.85
    with pytest.raises(ValueError, match="at least 5 measured steps"):
        fit_gpu_steps(synthetic_steps()[:3], PEAK, BANDWIDTH)


def test_the_stored_h200_measurements_fit_the_committed_profile() -> None:
    from blend.cost.model import load_hardware

    steps = load_model_steps(DATA)
    h200 = load_hardware("h200")
    fit = fit_gpu_steps(
        steps,
        h200.peak_flops,
        h200.mem_bandwidth_bytes_s,
        bandwidth_efficiency=h200.bandwidth_efficiency,
    )
    assert len(steps) >= 30
    assert fit.flops_efficiency == pytest.approx(h200.flops_efficiency, abs=0.01)
    assert fit.roofline_sharpness == pytest.approx(h200.roofline_sharpness, abs=0.05)
    assert fit.attention_flops_efficiency == pytest.approx(
        h200.attention_flops_efficiency, abs=0.01
    )
    assert fit.rms_relative_error < 0.05
    assert np.all(np.isfinite(fit.predict(steps, h200.peak_flops, h200.mem_bandwidth_bytes_s)))
