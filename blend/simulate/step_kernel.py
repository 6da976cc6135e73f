"""step_time.py's step model as scalar numba kernels, for the compiled engine loop.

The same formulas, in the same floating-point order (so the compiled engine reproduces
step_cost and decode_run_cost to the last bit; tests/simulate/test_kernels.py checks it),
on a flat array of the cost model's constants instead of a CostModel. Both also return the
busy time the steps would have had without reading the weights (the step model with
weight_s = 0), summed, the compute (gemm_s + attn_s), KV-traffic and prefill-attention times
summed (the gap breakdowns, gap.py, compare them with the bounds).
"""

from __future__ import annotations

import numba
import numpy as np

from blend.cost.model import CostModel

# cached per file (nothing here calls another file); no reference counting: see scheduler.py
_jit = numba.njit(cache=True, _nrt=False)

# Fields of the constants array (cost_constants)
N_PARAMS, FLOPS, BANDWIDTH, WEIGHT_S, KV_BYTES, OVERHEAD_S = range(6)
HIDDEN, N_LAYERS, KV_TOKEN_S, OVERLAP = range(6, 10)
ATTN_FLOPS, AFTER_GEMM, SHARPNESS = 10, 11, 12
# Tensor parallelism's all-reduce seconds per token (CostModel.collective_s_per_token), then
# the offload term (CostModel.offload): its number of points, then its tokens, then its
# seconds (an empty table: every weight resident)
COLLECTIVE_S, OFFLOAD_N, OFFLOAD_TABLE = 13, 14, 15
# Fields of a kernel's result tuple: StepCost's, then the busy time without the weights
TOTAL, COMPUTE_BOUND, MEMORY_BOUND, N_COMPUTE_BOUND, OVERHEAD, WEIGHT_READ = range(6)
BUSY_NO_WEIGHTS, COMPUTE_S, KV_S, ATTENTION_S = 6, 7, 8, 9


def cost_constants(cost: CostModel) -> np.ndarray:
    """The constants the kernels read, computed exactly as step_time.py computes them."""
    hw, model = cost.hardware, cost.model
    offload = cost.offload
    n_points = 0 if offload is None else len(offload.tokens)
    values = np.zeros(OFFLOAD_TABLE + 2 * n_points, dtype=np.float64)
    values[N_PARAMS] = cost.roofline_params
    values[FLOPS] = hw.effective_flops
    values[BANDWIDTH] = hw.effective_bandwidth
    values[WEIGHT_S] = cost.weight_read_s
    values[KV_BYTES] = model.kv_bytes_per_token
    values[OVERHEAD_S] = hw.step_overhead_s
    values[HIDDEN] = model.hidden_size
    values[N_LAYERS] = model.n_layers
    values[KV_TOKEN_S] = cost.kv_read_s_per_token
    values[OVERLAP] = 1.0 if hw.overlap_compute_memory else 0.0
    values[ATTN_FLOPS] = hw.effective_attention_flops
    values[AFTER_GEMM] = 1.0 if hw.attention_after_gemm else 0.0
    values[SHARPNESS] = hw.roofline_sharpness
    values[COLLECTIVE_S] = cost.collective_s_per_token
    values[OFFLOAD_N] = n_points
    if offload is not None:
        values[OFFLOAD_TABLE : OFFLOAD_TABLE + n_points] = offload.tokens
        values[OFFLOAD_TABLE + n_points :] = offload.offloaded_s
    return values


@_jit
def added_s(c: np.ndarray, tokens: float) -> float:
    """step_time.added_s: the offloaded layers' seconds, then the all-reduces'."""
    return offload_s(c, tokens) + c[COLLECTIVE_S] * tokens


@_jit
def offload_s(c: np.ndarray, tokens: float) -> float:
    """OffloadTerm.extra_s (0 without an offload table), in the same order."""
    n = int(c[OFFLOAD_N])
    if n == 0:
        return 0.0
    xs, ys = OFFLOAD_TABLE, OFFLOAD_TABLE + n
    if n == 1 or tokens <= c[xs]:
        return c[ys]
    i = 1
    while i < n - 1 and tokens > c[xs + i]:
        i += 1
    return c[ys + i - 1] + (c[ys + i] - c[ys + i - 1]) * (tokens - c[xs + i - 1]) / (
        c[xs + i] - c[xs + i - 1]
    )


@_jit
def attention_flops(c: np.ndarray, chunk: int, context: int) -> float:
    """prefill_attention_flops: a chunk of `chunk` tokens after `context` computed ones."""
    mean_attended = context + (chunk + 1) / 2.0
    return 4.0 * chunk * mean_attended * c[HIDDEN] * c[N_LAYERS]


@_jit
def soft_max(a: float, b: float, sharpness: float) -> float:
    """step_time.soft_max."""
    high, low = (a, b) if a >= b else (b, a)
    if sharpness <= 0.0 or high <= 0.0:
        return high
    return high * (1.0 + (low / high) ** sharpness) ** (1.0 / sharpness)


@_jit
def busy_time(c: np.ndarray, gemm_s: float, attn_s: float, weight_s: float, kv_s: float) -> float:
    """step_time.busy_time."""
    if c[OVERLAP] == 0.0:
        return gemm_s + attn_s + weight_s + kv_s
    if c[AFTER_GEMM] != 0.0:
        return soft_max(gemm_s, weight_s, c[SHARPNESS]) + kv_s + attn_s
    return max(gemm_s + attn_s, weight_s + kv_s)


@_jit
def step(
    c: np.ndarray,
    n_prefill_tokens: int,
    n_decode_seqs: int,
    decode_kv_tokens: float,
    prefill_attention_flops: float,
    prefill_kv_tokens: float,
) -> tuple[float, float, float, int, float, float, float, float, float, float]:
    """step_cost (same arguments), as a tuple indexed by TOTAL ... ATTENTION_S."""
    tokens = n_prefill_tokens + n_decode_seqs
    gemm_s = 2.0 * c[N_PARAMS] * tokens / c[FLOPS]
    attn_s = prefill_attention_flops / c[ATTN_FLOPS]
    kv_s = (decode_kv_tokens + prefill_kv_tokens) * c[KV_BYTES] / c[BANDWIDTH]
    busy = busy_time(c, gemm_s, attn_s, c[WEIGHT_S], kv_s) + added_s(c, tokens)
    busy_no_weights = busy_time(c, gemm_s, attn_s, 0.0, kv_s)
    bound = gemm_s + attn_s >= c[WEIGHT_S] + kv_s
    return (
        c[OVERHEAD_S] + busy,
        busy if bound else 0.0,
        0.0 if bound else busy,
        1 if bound else 0,
        c[OVERHEAD_S],
        c[WEIGHT_S],
        busy_no_weights,
        gemm_s + attn_s,
        kv_s,
        attn_s,
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
    c: np.ndarray,
    gemm_s: float,
    weight_s: float,
    kv_0: float,
    slope: float,
    n_steps: int,
    extra: float,
) -> tuple[float, float, float, int]:
    """Busy time of the run summed (its compute-bound part, its memory-bound part, the count
    of compute-bound steps), for step j's KV time kv_0 + slope * j and `extra` offloaded
    seconds every step."""
    memory_0 = weight_s + kv_0
    n_cb = _n_compute_bound(gemm_s, memory_0, slope, n_steps)
    if c[OVERLAP] == 0.0 or c[AFTER_GEMM] != 0.0:  # every step: fixed_s + kv_0 + slope * j
        if c[OVERLAP] != 0.0:
            fixed_s = soft_max(gemm_s, weight_s, c[SHARPNESS])
        else:
            fixed_s = gemm_s + weight_s
        kv_sum = n_steps * kv_0 + slope * n_steps * (n_steps - 1) / 2.0
        kv_cb = n_cb * kv_0 + slope * n_cb * (n_cb - 1) / 2.0
        busy = n_steps * fixed_s + kv_sum + n_steps * extra
        compute_part = n_cb * fixed_s + kv_cb + n_cb * extra
        return busy, compute_part, busy - compute_part, n_cb
    n_mb = n_steps - n_cb
    memory_sum = n_mb * memory_0 + slope * (n_cb + n_steps - 1) * n_mb / 2.0 + n_mb * extra
    compute_sum = n_cb * gemm_s + n_cb * extra
    return compute_sum + memory_sum, compute_sum, memory_sum, n_cb


@_jit
def decode_run(
    c: np.ndarray, n_seqs: int, first_kv_tokens: float, n_steps: int
) -> tuple[float, float, float, int, float, float, float, float, float, float]:
    """decode_run_cost (same arguments, n_steps >= 1), as a tuple like step's (no prefill,
    so no attention FLOPs)."""
    gemm_s = 2.0 * c[N_PARAMS] * n_seqs / c[FLOPS]
    kv_0 = first_kv_tokens * c[KV_TOKEN_S]  # KV time of step 0
    slope = n_seqs * c[KV_TOKEN_S]  # growth of the KV time per step
    extra = added_s(c, n_seqs)
    busy, compute_part, memory_part, n_cb = _busy(
        c, gemm_s, c[WEIGHT_S], kv_0, slope, n_steps, extra
    )
    busy_no_weights = _busy(c, gemm_s, 0.0, kv_0, slope, n_steps, 0.0)[0]
    overhead = n_steps * c[OVERHEAD_S]
    # decode_run_cost adds the parts to the overhead in this order
    if c[OVERLAP] != 0.0 and c[AFTER_GEMM] == 0.0:
        total = overhead + compute_part + memory_part
    else:
        total = overhead + busy
    return (
        total,
        compute_part,
        memory_part,
        n_cb,
        overhead,
        n_steps * c[WEIGHT_S],
        busy_no_weights,
        n_steps * gemm_s,
        n_steps * kv_0 + slope * n_steps * (n_steps - 1) / 2.0,
        0.0,
    )
