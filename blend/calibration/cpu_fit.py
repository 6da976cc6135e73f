"""Fit the step model (blend/cost/step_time.py) to timed steps of the vLLM CPU engine.

Two forms, both by least squares on relative error (small steps weigh as much as large ones):
    overlap:   t = overhead + max(FLOPs / F, bytes / W)   (roofline)
    additive:  t = overhead + FLOPs / F + bytes / W
The samples come from blend/calibration/cpu_measure.py (or a file of them written before).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from blend.cost.model import ModelSpec
from blend.demo.model import TinyModelShape

# The model the CPU calibration times: big enough that steps cost more than the overhead.
BENCH_SHAPE = TinyModelShape(
    vocab_size=2048,
    hidden_size=512,
    intermediate_size=1376,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=8,
    max_position_embeddings=2048,
)


def model_spec(shape: TinyModelShape) -> ModelSpec:
    """The cost-model spec of a TinyModelShape (untied embeddings, GQA attention, SwiGLU)."""
    h, hd = shape.hidden_size, shape.head_dim
    attention = h * hd * (2 * shape.num_attention_heads + 2 * shape.num_key_value_heads)
    mlp = 3 * h * shape.intermediate_size
    per_layer = attention + mlp + 2 * h
    n_params = shape.num_hidden_layers * per_layer + 2 * shape.vocab_size * h + h
    return ModelSpec(
        name=shape.name,
        n_params=float(n_params),
        n_layers=shape.num_hidden_layers,
        hidden_size=h,
        n_heads=shape.num_attention_heads,
        n_kv_heads=shape.num_key_value_heads,
        head_dim=hd,
        intermediate_size=shape.intermediate_size,
        vocab_size=shape.vocab_size,
        dtype_bytes=2,
    )


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed step and the quantities the step model charges for it."""

    kind: str  # "prefill" | "decode"
    group: str  # grid point: repeats of one point share it
    n_requests: int
    context: int  # prompt length (prefill) or KV length at the step (decode), tokens
    n_prefill_tokens: int
    n_decode_seqs: int
    prefill_attention_flops: float
    kv_tokens: float  # KV entries read + written
    seconds: float  # the time fitted: CPU seconds of the engine process, or wall (see measure)
    wall_seconds: float


def per_point(samples: list[Sample], pick: str) -> list[Sample]:
    """One sample per grid point: the fastest ("min") or the median ("median") one.

    On a shared machine the slower repeats carry time taken by other processes: the fastest
    describes the engine alone, the median the engine as the machine is shared right now.
    """
    if pick not in ("min", "median"):
        raise ValueError(f"pick must be 'min' or 'median', not {pick!r}")
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.group, []).append(sample)
    chosen = []
    for group in groups.values():
        ranked = sorted(group, key=lambda s: s.seconds)
        chosen.append(ranked[0] if pick == "min" else ranked[(len(ranked) - 1) // 2])
    return chosen


@dataclass(frozen=True, slots=True)
class Fit:
    step_overhead_s: float
    flops: float  # F_eff (FLOP/s)
    bandwidth: float  # W_eff (bytes/s)
    rel_rms: float  # root mean square of (predicted - measured) / measured
    rel_max: float  # largest |predicted - measured| / measured
    n_compute_bound: int
    n_samples: int
    overlap: bool = True  # step = o + max(compute, memory); False: o + compute + memory

    def predict(self, flops: np.ndarray, mem: np.ndarray) -> np.ndarray:
        """Step seconds for steps of `flops` FLOPs moving `mem` bytes."""
        compute, memory = flops / self.flops, mem / self.bandwidth
        busy = np.maximum(compute, memory) if self.overlap else compute + memory
        return self.step_overhead_s + busy


def features(samples: list[Sample], model: ModelSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FLOPs, bytes moved, seconds) of each sample, as the simulator charges them."""
    flops = np.array(
        [
            2.0 * model.n_params * (s.n_prefill_tokens + s.n_decode_seqs)
            + s.prefill_attention_flops
            for s in samples
        ]
    )
    mem = np.array([model.weight_bytes + s.kv_tokens * model.kv_bytes_per_token for s in samples])
    return flops, mem, np.array([s.seconds for s in samples])


def fit_step_model(
    samples: list[Sample], model: ModelSpec, max_iter: int = 50, overlap: bool = True
) -> Fit:
    """Least squares (relative error) of t = o + max(a * FLOPs, b * bytes), or with
    overlap=False of t = o + a * FLOPs + b * bytes; F = 1/a, W = 1/b.

    The max is piecewise linear: points are assigned to the compute or memory side by the
    current fit and the linear problem is re-solved until the assignment is stable.
    """
    if not samples:
        raise ValueError("fit_step_model needs at least one sample")
    flops, mem, t = features(samples, model)
    if not overlap:
        return _fit_additive(flops, mem, t, len(samples))
    weights: np.ndarray = 1.0 / t  # relative error: small steps count as much as large ones
    compute_side = flops / flops.max() >= mem / mem.max()  # start: the dominant raw term
    params: np.ndarray = np.zeros(3)
    for _ in range(max_iter):
        design = np.column_stack([np.ones_like(t), flops * compute_side, mem * ~compute_side])
        params, *_ = np.linalg.lstsq(design * weights[:, None], t * weights, rcond=None)
        params = np.maximum(params, [0.0, 1e-30, 1e-30])
        new_side = params[1] * flops >= params[2] * mem
        if np.array_equal(new_side, compute_side):
            break
        compute_side = new_side
    overhead, a, b = params
    predicted = overhead + np.maximum(a * flops, b * mem)
    rel = (predicted - t) / t
    return Fit(
        step_overhead_s=float(overhead),
        flops=float(1.0 / a),
        bandwidth=float(1.0 / b),
        rel_rms=float(np.sqrt(np.mean(rel**2))),
        rel_max=float(np.abs(rel).max()),
        n_compute_bound=int(compute_side.sum()),
        n_samples=len(samples),
    )


def _fit_additive(flops: np.ndarray, mem: np.ndarray, t: np.ndarray, n_samples: int) -> Fit:
    weights: np.ndarray = 1.0 / t  # relative error, as in the overlapping fit
    design = np.column_stack([np.ones_like(t), flops, mem])
    params, *_ = np.linalg.lstsq(design * weights[:, None], t * weights, rcond=None)
    overhead, a, b = np.maximum(params, [0.0, 1e-30, 1e-30])
    fit = Fit(
        step_overhead_s=float(overhead),
        flops=float(1.0 / a),
        bandwidth=float(1.0 / b),
        rel_rms=0.0,
        rel_max=0.0,
        n_compute_bound=int((a * flops >= b * mem).sum()),
        n_samples=n_samples,
        overlap=False,
    )
    rel = (fit.predict(flops, mem) - t) / t
    return replace(fit, rel_rms=float(np.sqrt(np.mean(rel**2))), rel_max=float(np.abs(rel).max()))
