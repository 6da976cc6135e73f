"""Roofline time of one engine step, and of a run of identical decode-only steps.

One step (iteration) of a continuous-batching engine feeds a batch of tokens through the
model once. With
    gemm_s    = 2 P * tokens / F_eff                     dense (GEMM) compute
    attn_s    = prefill attention FLOPs / F_attn_eff     attention compute of prefill chunks
    weight_s  = weight bytes / W_eff                      reading the weights once
    kv_s      = KV bytes read and written / W_eff         attention's KV traffic
the step takes step_overhead_s plus, by the hardware's step model,
    attention after GEMMs (vLLM on GPUs):  smax(gemm_s, weight_s) + kv_s + attn_s
    everything overlaps (NanoFlow-like):   max(gemm_s + attn_s, weight_s + kv_s)
    nothing overlaps (CPUs):               gemm_s + attn_s + weight_s + kv_s
where smax(a, b) = (a^k + b^k)^(1/k) is the GEMM roofline's soft knee (k = roofline_sharpness;
the hard max when 0). tokens = prefill-chunk tokens + one token per decoding request. Prefill
attention FLOPs of a chunk of g tokens after c computed ones: 4 * g * (c + (g + 1) / 2) *
hidden * L (each token attends to the tokens before it and itself). KV traffic of a scheduled
request that computes g tokens after c: it reads the KV of all c + g tokens it attends to and
writes the KV of its g new tokens. F_eff and W_eff are the constants the cost model uses for
Comp and Mem, and every form is >= max(gemm_s + attn_s, weight_s + kv_s), so T_opt stays a
lower bound of the simulated makespan (blend/simulate/optimal.py).
A step counts as compute-bound when gemm_s + attn_s >= weight_s + kv_s.
A model larger than the GPU (CostModel.offload, blend/cost/offload/pricing.py): P and the weight
bytes are those resident on the GPU, and the busy time gains the offloaded layers' seconds at
the step's tokens (HeteGen's per-layer max(CPU part, copy + GPU part)); the step's
classification looks at the roofline parts only. An engine spanning t GPUs (tensor
parallelism, blend/cost/parallel.py) is priced on their aggregate, and its busy time gains the
all-reduces' seconds per token (CostModel.collective_s_per_token) at the step's tokens.
step_kernel.py is the same model compiled for the simulator's loop, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

from blend.cost.model import CostModel, HardwareSpec


@dataclass(frozen=True, slots=True)
class StepCost:
    """Time of one step (or the sum over a run of steps), split by cause. Seconds."""

    total_s: float  # overhead + busy time (see the module docstring), summed
    compute_bound_s: float  # busy time summed over compute-bound steps
    memory_bound_s: float  # busy time summed over memory-bound steps
    n_compute_bound_steps: int
    overhead_s: float
    weight_read_s: float  # weight bytes / W_eff, summed over the steps


def prefill_attention_flops(cost: CostModel, chunk_tokens: int, context_tokens: int) -> float:
    """FLOPs of attention for a prefill chunk of `chunk_tokens` after `context_tokens`."""
    model = cost.model
    mean_attended = context_tokens + (chunk_tokens + 1) / 2.0
    return 4.0 * chunk_tokens * mean_attended * model.hidden_size * model.n_layers


def soft_max(a: float, b: float, sharpness: float) -> float:
    """(a^k + b^k)^(1/k) for a, b >= 0, the plain max when k is 0 (k = sharpness)."""
    high, low = (a, b) if a >= b else (b, a)
    if sharpness <= 0.0 or high <= 0.0:
        return high
    return float(high * (1.0 + (low / high) ** sharpness) ** (1.0 / sharpness))


def busy_time(
    hw: HardwareSpec, gemm_s: float, attn_s: float, weight_s: float, kv_s: float
) -> float:
    """Busy time of a step (s) from its four parts, by the hardware's step model."""
    if not hw.overlap_compute_memory:
        return gemm_s + attn_s + weight_s + kv_s
    if hw.attention_after_gemm:
        return soft_max(gemm_s, weight_s, hw.roofline_sharpness) + kv_s + attn_s
    return max(gemm_s + attn_s, weight_s + kv_s)


def step_cost(
    cost: CostModel,
    n_prefill_tokens: int,
    n_decode_seqs: int,
    decode_kv_tokens: float,
    prefill_attention_flops: float = 0.0,
    prefill_kv_tokens: float = 0.0,
) -> StepCost:
    """Cost of one step.

    n_prefill_tokens: prompt (or recomputed) tokens in prefill chunks this step.
    n_decode_seqs: requests decoding one token each.
    decode_kv_tokens: token-KV entries the decodes read plus write (context + 2 per decode).
    prefill_attention_flops: attention FLOPs of the prefill chunks.
    prefill_kv_tokens: token-KV entries the prefill chunks read plus write.
    """
    hw, model = cost.hardware, cost.model
    tokens = n_prefill_tokens + n_decode_seqs
    gemm_s = 2.0 * cost.roofline_params * tokens / hw.effective_flops
    attn_s = prefill_attention_flops / hw.effective_attention_flops
    weight_s = cost.weight_read_s
    # bytes first, then bandwidth: the compiled twin (step_kernel.step) computes it so
    kv_s = (
        (decode_kv_tokens + prefill_kv_tokens) * model.kv_bytes_per_token / hw.effective_bandwidth
    )
    busy = busy_time(hw, gemm_s, attn_s, weight_s, kv_s) + added_s(cost, tokens)
    compute_bound = gemm_s + attn_s >= weight_s + kv_s
    return StepCost(
        total_s=hw.step_overhead_s + busy,
        compute_bound_s=busy if compute_bound else 0.0,
        memory_bound_s=0.0 if compute_bound else busy,
        n_compute_bound_steps=int(compute_bound),
        overhead_s=hw.step_overhead_s,
        weight_read_s=weight_s,
    )


def step_time_s(
    cost: CostModel,
    n_prefill_tokens: int,
    n_decode_seqs: int,
    decode_kv_tokens: float,
    prefill_attention_flops: float = 0.0,
    prefill_kv_tokens: float = 0.0,
) -> float:
    """Seconds of one step (see step_cost for the arguments)."""
    return step_cost(
        cost,
        n_prefill_tokens,
        n_decode_seqs,
        decode_kv_tokens,
        prefill_attention_flops,
        prefill_kv_tokens,
    ).total_s


def added_s(cost: CostModel, tokens: float) -> float:
    """Seconds a step of `tokens` tokens spends beyond the roofline: the offloaded layers'
    (0: all resident) and the tensor-parallel all-reduces' (0: one GPU)."""
    offloaded = 0.0 if cost.offload is None else cost.offload.extra_s(tokens)
    return offloaded + cost.collective_s_per_token * tokens


def decode_run_cost(cost: CostModel, n_seqs: int, first_kv_tokens: float, n_steps: int) -> StepCost:
    """Summed cost of `n_steps` identical decode-only steps of `n_seqs` requests, in closed form.

    Step j (0-based) moves first_kv_tokens + n_seqs * j token-KV entries (every context grows
    by one token a step); compute is the same every step. Equal to summing step_cost over the
    steps one by one, up to float rounding.
    """
    if n_steps <= 0:
        return StepCost(0.0, 0.0, 0.0, 0, 0.0, 0.0)
    hw = cost.hardware
    gemm_s = 2.0 * cost.roofline_params * n_seqs / hw.effective_flops
    weight_s = cost.weight_read_s
    extra = added_s(cost, n_seqs)  # the same every step (the batch does not change)
    per_token_s = cost.kv_read_s_per_token
    kv_0 = first_kv_tokens * per_token_s  # KV time of step 0
    slope = n_seqs * per_token_s  # growth of the KV time per step
    memory_0 = weight_s + kv_0  # memory time of step 0
    # Steps j < n_cb are compute-bound (gemm_s >= memory_0 + slope * j).
    if gemm_s < memory_0:
        n_cb = 0
    elif slope == 0:
        n_cb = n_steps
    else:
        n_cb = min(n_steps, int((gemm_s - memory_0) // slope) + 1)
    kv_sum = n_steps * kv_0 + slope * n_steps * (n_steps - 1) / 2.0
    kv_cb = n_cb * kv_0 + slope * n_cb * (n_cb - 1) / 2.0  # KV time of the compute-bound ones
    if not hw.overlap_compute_memory or hw.attention_after_gemm:
        # every step costs fixed_s + kv_0 + slope * j
        if hw.overlap_compute_memory:
            fixed_s = soft_max(gemm_s, weight_s, hw.roofline_sharpness)
        else:
            fixed_s = gemm_s + weight_s
        busy = n_steps * fixed_s + kv_sum + n_steps * extra
        compute_part = n_cb * fixed_s + kv_cb + n_cb * extra
        return StepCost(
            total_s=n_steps * hw.step_overhead_s + busy,
            compute_bound_s=compute_part,
            memory_bound_s=busy - compute_part,
            n_compute_bound_steps=n_cb,
            overhead_s=n_steps * hw.step_overhead_s,
            weight_read_s=n_steps * weight_s,
        )
    n_mb = n_steps - n_cb
    # Sum of memory_0 + slope * j for j in [n_cb, n_steps).
    memory_sum = n_mb * memory_0 + slope * (n_cb + n_steps - 1) * n_mb / 2.0 + n_mb * extra
    compute_sum = n_cb * gemm_s + n_cb * extra
    return StepCost(
        total_s=n_steps * hw.step_overhead_s + compute_sum + memory_sum,
        compute_bound_s=compute_sum,
        memory_bound_s=memory_sum,
        n_compute_bound_steps=n_cb,
        overhead_s=n_steps * hw.step_overhead_s,
        weight_read_s=n_steps * weight_s,
    )
