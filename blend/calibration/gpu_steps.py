"""Fit the GPU step model to measured model steps (bench/gpu_microbench.py's model_step).

The model (step_time.py, attention after the GEMMs, soft roofline knee):
    t = overhead + smax(gemm_flops / (F e_f), weight_bytes / (W e_w); k)
          + kv_bytes / (W e_w) + prefill_attention_flops / (F e_a)
F and W are the datasheet peaks; the fit finds overhead, e_f, e_a and k (and e_w unless it is
given, e.g. from a measured read bandwidth) by least squares on log time, so every point
weighs by its relative error. Features are computed as the simulator computes them
(2 x parameters x tokens for the GEMMs, the simulator's prefill attention FLOPs).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, slots=True)
class MeasuredStep:
    """One timed engine step and the work in it."""

    label: str
    gemm_flops: float  # 2 x parameters x tokens
    prefill_attention_flops: float
    weight_bytes: float
    kv_bytes: float  # KV read and written
    seconds: float  # measured step time


@dataclass(frozen=True, slots=True)
class GpuStepFit:
    overhead_s: float
    flops_efficiency: float  # of the peak FLOP/s, for the GEMMs
    bandwidth_efficiency: float  # of the peak bandwidth, for weights and KV
    attention_flops_efficiency: float  # of the peak FLOP/s, for prefill attention
    roofline_sharpness: float  # k of the soft knee
    rms_relative_error: float
    max_relative_error: float

    def predict(self, steps: Sequence[MeasuredStep], peak_flops: float, bandwidth: float):
        return _predict(self._params(), _features(steps), peak_flops, bandwidth)

    def _params(self) -> np.ndarray:
        return np.array(
            [
                self.overhead_s,
                self.flops_efficiency,
                self.bandwidth_efficiency,
                self.attention_flops_efficiency,
                self.roofline_sharpness,
            ]
        )


def load_model_steps(path: Path) -> list[MeasuredStep]:
    """The model_step points of a gpu_microbench JSON (CUDA-graph time where there is one:
    vLLM replays its steps from CUDA graphs)."""
    data = json.loads(path.read_text())
    steps = []
    for p in data["sections"]["model_step"]["points"]:
        if p.get("error"):
            continue
        gemm = p["blend_compute_flops"] - p["prefill_attention_flops"]
        steps.append(
            MeasuredStep(
                label=f"{p['kind']} P={p['n_prefill_tokens']} b={p['n_decodes']} "
                f"c={p['decode_context']}",
                gemm_flops=gemm,
                prefill_attention_flops=p["prefill_attention_flops"],
                weight_bytes=p["weight_bytes"],
                kv_bytes=p["kv_read_bytes"] + p["kv_write_bytes"],
                seconds=p.get("graph_seconds") or p["seconds"],
            )
        )
    return steps


def _features(steps: Sequence[MeasuredStep]) -> np.ndarray:
    return np.array(
        [[s.gemm_flops, s.prefill_attention_flops, s.weight_bytes, s.kv_bytes] for s in steps]
    )


def _predict(x: np.ndarray, f: np.ndarray, peak_flops: float, bandwidth: float) -> np.ndarray:
    overhead, e_f, e_w, e_a, k = x
    gemm = f[:, 0] / (peak_flops * e_f)
    weights = f[:, 2] / (bandwidth * e_w)
    high, low = np.maximum(gemm, weights), np.minimum(gemm, weights)
    knee = high * (1.0 + (low / high) ** k) ** (1.0 / k)
    return overhead + knee + f[:, 3] / (bandwidth * e_w) + f[:, 1] / (peak_flops * e_a)


def fit_gpu_steps(
    steps: Sequence[MeasuredStep],
    peak_flops: float,
    bandwidth: float,
    *,
    bandwidth_efficiency: float | None = None,
) -> GpuStepFit:
    """Least squares on log step time; `bandwidth_efficiency` fixes e_w when given."""
    from scipy.optimize import least_squares

    if len(steps) < 5:
        raise ValueError(f"need at least 5 measured steps to fit 5 parameters, got {len(steps)}")
    f = _features(steps)
    t = np.array([s.seconds for s in steps])

    def full(x: np.ndarray) -> np.ndarray:
        if bandwidth_efficiency is None:
            return x
        return np.array([x[0], x[1], bandwidth_efficiency, x[2], x[3]])

    x0 = [0.002, 0.7, 0.85, 0.4, 3.0]
    lower, upper = [0.0, 0.05, 0.05, 0.02, 1.0], [0.1, 1.0, 1.0, 1.0, 64.0]
    if bandwidth_efficiency is not None:
        x0, lower, upper = (v[:2] + v[3:] for v in (x0, lower, upper))
    fit = least_squares(
        lambda x: np.log(_predict(full(x), f, peak_flops, bandwidth)) - np.log(t),
        x0,
        bounds=(lower, upper),
    )
    params = full(fit.x)
    errors = _predict(params, f, peak_flops, bandwidth) / t - 1.0
    return GpuStepFit(
        overhead_s=float(params[0]),
        flops_efficiency=float(params[1]),
        bandwidth_efficiency=float(params[2]),
        attention_flops_efficiency=float(params[3]),
        roofline_sharpness=float(params[4]),
        rms_relative_error=float(np.sqrt(np.mean(errors**2))),
        max_relative_error=float(np.abs(errors).max()),
    )
