"""step_time.py's step model as scalar numba kernels, for the compiled engine loop.

The same formulas, in the same floating-point order (so the compiled engine reproduces
step_cost and decode_run_cost to the last bit; tests/simulate/test_kernels.py checks it),
on a flat array of the cost model's constants instead of a CostModel. Both also return the
busy time the steps would have had without reading the weights: combine(compute_s,
memory_s - weight_s), summed, and the compute and KV-traffic times summed (the gap breakdown,
gap.py, compares them with the bounds).
"""

from __future__ import annotations

import numba
import numpy as np

from blend.cost import CostModel

# cached per file (nothing here calls another file); no reference counting: see scheduler.py
_jit = numba.njit(cache=True, _nrt=False)

# Fields of the constants array (cost_constants)
N_PARAMS, FLOPS, BANDWIDTH, WEIGHT_S, KV_BYTES, OVERHEAD_S = range(6)
HIDDEN, N_LAYERS, KV_TOKEN_S, OVERLAP = range(6, 10)
# Fields of a kernel's result tuple: StepCost's, then the busy time without the weights
TOTAL, COMPUTE_BOUND, MEMORY_BOUND, N_COMPUTE_BOUND, OVERHEAD, WEIGHT_READ = range(6)
BUSY_NO_WEIGHTS, COMPUTE_S, KV_S = 6, 7, 8


def cost_constants(cost: CostModel) -> np.ndarray:
    """The constants the kernels read, computed exactly as step_time.py computes them."""
    hw, model = cost.hardware, cost.model
    values = np.zeros(OVERLAP + 1, dtype=np.float64)
    values[N_PARAMS] = model.n_params
    values[FLOPS] = hw.effective_flops
    values[BANDWIDTH] = hw.effective_bandwidth
    values[WEIGHT_S] = model.weight_bytes / hw.effective_bandwidth
    values[KV_BYTES] = model.kv_bytes_per_token
    values[OVERHEAD_S] = hw.step_overhead_s
    values[HIDDEN] = model.hidden_size
    values[N_LAYERS] = model.n_layers
    values[KV_TOKEN_S] = model.kv_bytes_per_token / hw.effective_bandwidth
    values[OVERLAP] = 1.0 if hw.overlap_compute_memory else 0.0
    return values


@_jit
def attention_flops(c: np.ndarray, chunk: int, context: int) -> float:
    """prefill_attention_flops: a chunk of `chunk` tokens after `context` computed ones."""
    mean_attended = context + (chunk + 1) / 2.0
    return 4.0 * chunk * mean_attended * c[HIDDEN] * c[N_LAYERS]


@_jit
def step(
    c: np.ndarray,
    n_prefill_tokens: int,
    n_decode_seqs: int,
    decode_kv_tokens: float,
    prefill_attention_flops: float,
    prefill_kv_tokens: float,
) -> tuple[float, float, float, int, float, float, float, float, float]:
    """step_cost (same arguments), as a tuple indexed by TOTAL ... KV_S."""
    tokens = n_prefill_tokens + n_decode_seqs
    compute_s = (2.0 * c[N_PARAMS] * tokens + prefill_attention_flops) / c[FLOPS]
    kv_s = (decode_kv_tokens + prefill_kv_tokens) * c[KV_BYTES]
    kv_time_s = kv_s / c[BANDWIDTH]
    memory_s = c[WEIGHT_S] + kv_time_s
    overlap = c[OVERLAP] != 0.0
    busy = max(compute_s, memory_s) if overlap else compute_s + memory_s
    busy_no_weights = max(compute_s, kv_time_s) if overlap else compute_s + kv_time_s
    bound = compute_s >= memory_s
    return (
        c[OVERHEAD_S] + busy,
        busy if bound else 0.0,
        0.0 if bound else busy,
        1 if bound else 0,
        c[OVERHEAD_S],
        c[WEIGHT_S],
        busy_no_weights,
        compute_s,
        kv_time_s,
    )


@_jit
def _n_compute_bound(compute_s: float, memory_0: float, slope: float, n_steps: int) -> int:
    """Steps j < n of the run with compute_s >= memory_0 + slope * j."""
    if compute_s < memory_0:
        return 0
    if slope == 0:
        return n_steps
    q = (compute_s - memory_0) // slope  # a float that may not fit an int64 when slope is tiny
    return n_steps if q >= n_steps else int(q) + 1


@_jit
def _busy(
    overlap: bool, compute_s: float, memory_0: float, slope: float, n_steps: int
) -> tuple[float, float, float, int]:
    """Busy time of the run summed (its compute-bound part, its memory-bound part, the count
    of compute-bound steps), for step j's memory time memory_0 + slope * j."""
    n_cb = _n_compute_bound(compute_s, memory_0, slope, n_steps)
    if not overlap:  # every step costs compute_s + memory_0 + slope * j
        busy = n_steps * (compute_s + memory_0) + slope * n_steps * (n_steps - 1) / 2.0
        compute_part = n_cb * (compute_s + memory_0) + slope * n_cb * (n_cb - 1) / 2.0
        return busy, compute_part, busy - compute_part, n_cb
    n_mb = n_steps - n_cb
    memory_sum = n_mb * memory_0 + slope * (n_cb + n_steps - 1) * n_mb / 2.0
    compute_sum = n_cb * compute_s
    return compute_sum + memory_sum, compute_sum, memory_sum, n_cb


@_jit
def decode_run(
    c: np.ndarray, n_seqs: int, first_kv_tokens: float, n_steps: int
) -> tuple[float, float, float, int, float, float, float, float, float]:
    """decode_run_cost (same arguments, n_steps >= 1), as a tuple like step's."""
    compute_s = 2.0 * c[N_PARAMS] * n_seqs / c[FLOPS]
    kv_0 = first_kv_tokens * c[KV_TOKEN_S]  # KV time of step 0
    slope = n_seqs * c[KV_TOKEN_S]  # growth of the memory time per step
    overlap = c[OVERLAP] != 0.0
    busy, compute_part, memory_part, n_cb = _busy(
        overlap, compute_s, c[WEIGHT_S] + kv_0, slope, n_steps
    )
    busy_no_weights = _busy(overlap, compute_s, kv_0, slope, n_steps)[0]
    overhead = n_steps * c[OVERHEAD_S]
    # with overlap, decode_run_cost adds the two sums to the overhead one after the other
    total = overhead + compute_part + memory_part if overlap else overhead + busy
    return (
        total,
        compute_part,
        memory_part,
        n_cb,
        overhead,
        n_steps * c[WEIGHT_S],
        busy_no_weights,
        n_steps * compute_s,
        n_steps * kv_0 + slope * n_steps * (n_steps - 1) / 2.0,
    )
