"""T_seq, the lower bound of the makespan on the engine blend runs (vLLM: attention after GEMMs).

T_opt (optimal.py) bounds an engine that overlaps GEMMs with attention; vLLM runs each
layer's GEMMs and then its attention, so no order on vLLM gets near it. Under the simulator's
own step model (step_time.py: step = o + smax_k(GEMM compute, weight read) + KV traffic +
prefill attention), summed over the N steps of a run,

    T_seq = Mem + A + smax_k(C, N_min w) + N_min o + X
    N_min = max(d_max, ceil(sum_r d_r (d_r - 1) / 2 / M))

Mem   KV reads of every decode token, sum_r (p_r d_r + d_r^2 / 2) KV bytes / W_eff
A     prefill attention of the distinct prompt tokens (each prefix computed once, at its
      position in the prompt) / F_attn_eff
C     GEMM compute no order avoids: ((1 - s) sum p + sum (d - 1)) 2 P / F_eff
w, o  one read of the weights, and the fixed overhead, of one step
X     tensor parallelism's all-reduces of the tokens C counts (0 on one GPU:
      blend/cost/parallel.py): a step's all-reduce time is linear in its tokens
d_max the longest output: its d_max tokens take d_max steps one after the other
M     the KV cache (tokens): a request holds k output tokens at its k-th decode, so the
      steps together hold sum_r d_r (d_r - 1) / 2 output tokens, at most M a step

Why it is a lower bound, whatever the order and the settings: every step costs its overhead
plus busy_time(GEMM_i, attention_i, w, KV_i); summed over steps, the sums of GEMM, attention
and KV times are at least C, A and Mem (optimal.py's argument; preemption only adds work),
and busy_time is superadditive (the smax of sums is at most the sum of smaxes: Minkowski's
inequality for k >= 1; a max of sums is at most the sum of maxes) and increasing in every
argument, so the makespan is at least N o + busy_time(C, A, N w, Mem) >= T_seq for N >= N_min.
The same expression with the hardware's other step models (everything overlapping, or
nothing overlapping as on CPUs) is the bound of those engines; T_seq is its vLLM form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from blend.cost.model import CostModel
from blend.cost.step_time import busy_time, soft_max
from blend.planners.prompt_tokens import PromptTokens
from blend.planners.tree import adjacent_lcp, lexicographic_order, sorted_with_lcp
from blend.simulate.optimal import optimal_from_lengths
from blend.simulate.types import SimRequest


@dataclass(frozen=True, slots=True)
class SequentialBound:
    """T_seq and its terms (seconds unless named)."""

    makespan_s: float  # T_seq = busy_time(C, A, N_min w, Mem) + N_min o
    kv_reads_s: float  # Mem: KV reads of every decode token
    prefill_attention_s: float  # A: attention of the distinct prompt tokens
    compute_s: float  # C: GEMM compute of the distinct prompt tokens and fed-back outputs
    weight_reads_s: float  # N_min w: the weights read once a step
    gemm_s: float  # smax_k(C, N_min w): the GEMM part of the vLLM form (soft roofline knee)
    overhead_s: float  # N_min o
    collective_s: float  # X: all-reduces of the tokens C counts (tensor parallelism)
    n_min_steps: int  # N_min = max(longest_output_steps, kv_limited_steps)
    longest_output_steps: int  # d_max: the critical path (the drain of the longest request)
    kv_limited_steps: int  # ceil(sum d (d - 1) / 2 / M): steps the KV cache needs at least
    sharing_ratio: float  # s of the prompts' trie

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PromptTrieTotals:
    """What the bound needs of the prompts' trie (one lexicographic sort)."""

    prompt_tokens: int  # sum p
    distinct_tokens: int  # tokens of the trie: (1 - s) sum p
    distinct_position_sum: float  # sum over the trie's tokens of (position + 1)

    @property
    def sharing_ratio(self) -> float:
        return 1.0 - self.distinct_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def prompt_trie_totals(prompts: Sequence[Sequence[int] | np.ndarray]) -> PromptTrieTotals:
    """Distinct prompt tokens and their positions: in lexicographic order a prompt's tokens
    past its common prefix with the one before are exactly those no earlier prompt has."""
    if isinstance(prompts, PromptTokens):  # the kept sort and lengths: no prompt read
        order, kept_lcp = sorted_with_lcp(prompts)
        lcp = kept_lcp.astype(np.float64)
        lengths = prompts.lengths[order].astype(np.float64)
    else:
        order = lexicographic_order(prompts)
        lcp = adjacent_lcp(prompts, order).astype(np.float64)
        lengths = np.fromiter((len(prompts[i]) for i in order.tolist()), np.float64, len(order))
    # positions lcp .. len - 1 are new: sum of (i + 1) over them
    positions = (lengths * (lengths + 1) - lcp * (lcp + 1)) / 2.0
    return PromptTrieTotals(
        prompt_tokens=int(lengths.sum()),
        distinct_tokens=int((lengths - lcp).sum()),
        distinct_position_sum=float(positions.sum()),
    )


def sequential_bound(
    requests: Sequence[SimRequest],
    cost: CostModel,
    kv_capacity_tokens: int | None = None,
    trie: PromptTrieTotals | None = None,
) -> SequentialBound:
    """T_seq of `requests` at their true output lengths (module docstring); the KV cache is
    the cost model's unless given; `trie` saves sorting the prompts again."""
    if not requests:
        raise ValueError("no requests to bound")
    trie = trie or prompt_trie_totals([r.prompt_token_ids for r in requests])
    p = np.fromiter((len(r.prompt_token_ids) for r in requests), np.float64, len(requests))
    d = np.fromiter((r.output_len for r in requests), np.float64, len(requests))
    return sequential_bound_of_lengths(p, d, cost, trie, kv_capacity_tokens)


def sequential_bound_of_lengths(
    p: np.ndarray,
    d: np.ndarray,
    cost: CostModel,
    trie: PromptTrieTotals,
    kv_capacity_tokens: int | None = None,
) -> SequentialBound:
    """sequential_bound of requests given as prompt and output lengths (tokens, float64)."""
    if not len(p):
        raise ValueError("no requests to bound")
    hw, model = cost.hardware, cost.model
    capacity = cost.kv_capacity_tokens if kv_capacity_tokens is None else kv_capacity_tokens
    longest = int(d.max())
    kv_steps = math.ceil(float((d * (d - 1.0) / 2.0).sum()) / max(1, capacity))
    n_min = max(longest, kv_steps)
    per_token_kv_s = cost.kv_read_s_per_token
    mem = float((p * d + d * d / 2.0).sum()) * per_token_kv_s
    attention = (
        4.0 * model.hidden_size * model.n_layers * trie.distinct_position_sum
    ) / hw.effective_attention_flops
    tokens = trie.distinct_tokens + float((d - 1.0).sum())
    compute = 2.0 * cost.roofline_params * tokens / hw.effective_flops
    weight_s = cost.weight_read_s
    busy = busy_time(hw, compute, attention, n_min * weight_s, mem)
    collective = cost.collective_s_per_token * tokens
    return SequentialBound(
        makespan_s=busy + n_min * hw.step_overhead_s + collective,
        kv_reads_s=mem,
        prefill_attention_s=attention,
        compute_s=compute,
        weight_reads_s=n_min * weight_s,
        gemm_s=soft_max(compute, n_min * weight_s, hw.roofline_sharpness),
        overhead_s=n_min * hw.step_overhead_s,
        collective_s=collective,
        n_min_steps=n_min,
        longest_output_steps=longest,
        kv_limited_steps=kv_steps,
        sharing_ratio=trie.sharing_ratio,
    )


@dataclass(frozen=True, slots=True)
class EstimatedBounds:
    """Both bounds at estimated output lengths (what a plan knows before its run; a lower
    bound of the real makespan only as far as the estimates hold: a group's mean hides its
    longest request). Seconds."""

    t_seq_s: float  # the sequential engine's (vLLM's) bound
    t_opt_s: float  # the bound of an engine that overlaps GEMMs with attention
    n_min_steps: int | None  # the fewest steps T_seq counts (None: not recorded)


def estimated_bounds(
    prompts: Sequence[Sequence[int] | np.ndarray], output_tokens: np.ndarray, cost: CostModel
) -> EstimatedBounds | None:
    """T_seq and T_opt of these prompts at these output lengths (rounded, at least 1 token);
    None for no prompts. Arrays throughout: no request object (10M prompts are 10M)."""
    if not len(prompts):
        return None
    d = np.maximum(1, np.rint(np.asarray(output_tokens, dtype=np.float64)))
    if isinstance(prompts, PromptTokens):
        p = prompts.lengths.astype(np.float64)
    else:
        p = np.fromiter((len(prompt) for prompt in prompts), np.float64, len(prompts))
    trie = prompt_trie_totals(prompts)
    bound = sequential_bound_of_lengths(p, d, cost, trie)
    t_opt = optimal_from_lengths(p, d, cost, trie.sharing_ratio)
    return EstimatedBounds(bound.makespan_s, t_opt, bound.n_min_steps)
