"""T_seq, the sequential engine's bound: worked out by hand on the toy cost model, never above
a simulated run, and its gap breakdown."""

from __future__ import annotations

import math

import pytest

from bench.workloads.generators import default_cost
from blend.simulate import SimConfig, SimRequest, optimal_makespan_s, simulate
from blend.simulate.gap import sequential_gap
from blend.simulate.sequential_bound import (
    estimated_bounds,
    prompt_trie_totals,
    sequential_bound,
)
from tests.support.toys import toy_cost

# attention after the GEMMs (vLLM), a hard roofline knee: 1 s of GEMM a token, 1 s to read the
# weights, 2 s a KV token, 4 (i + 1) s of attention for a prompt token at position i
VLLM_TOY = toy_cost(overhead=0.5, attention_after_gemm=True)
REQUESTS = [SimRequest("a", [1, 2, 3], 2), SimRequest("b", [1, 2, 4], 4)]


def test_prompt_trie_totals_count_each_prefix_once_at_its_position() -> None:
    trie = prompt_trie_totals([[1, 2, 3], [1, 2, 4], [5]])
    assert trie.prompt_tokens == 7
    assert trie.distinct_tokens == 5  # 1, 2, 3 | 4 | 5
    assert trie.distinct_position_sum == (1 + 2 + 3) + 3 + 1
    assert trie.sharing_ratio == pytest.approx(2 / 7)


def test_t_seq_by_hand() -> None:
    bound = sequential_bound(REQUESTS, VLLM_TOY, kv_capacity_tokens=1000)
    assert bound.kv_reads_s == 2 * ((3 * 2 + 2) + (3 * 4 + 8))  # 2 s x (p d + d^2 / 2)
    assert bound.prefill_attention_s == 4 * ((1 + 2 + 3) + 3)
    assert bound.compute_s == 4 + (1 + 3)  # distinct prompt tokens + fed-back outputs
    assert bound.longest_output_steps == 4 and bound.kv_limited_steps == 1
    assert bound.n_min_steps == 4
    assert bound.weight_reads_s == 4 and bound.overhead_s == 2
    assert bound.gemm_s == 8  # max(C, N w) = max(8, 4)
    assert bound.makespan_s == 56 + 36 + 8 + 2


def test_a_small_cache_needs_more_steps_than_the_longest_output() -> None:
    # the outputs hold 1 + 6 = 7 token-steps of KV: one token of cache needs 7 steps
    bound = sequential_bound(REQUESTS, VLLM_TOY, kv_capacity_tokens=1)
    assert bound.kv_limited_steps == 7 and bound.n_min_steps == 7
    assert bound.makespan_s == 56 + 36 + max(8, 7) + 7 * 0.5


def test_the_soft_knee_and_the_other_step_models() -> None:
    soft = toy_cost(overhead=0.5, attention_after_gemm=True, roofline_sharpness=2.0)
    assert sequential_bound(REQUESTS, soft, 1000).gemm_s == pytest.approx(math.hypot(8, 4))
    # everything overlapping: max(C + A, N w + Mem) + N o
    overlap = toy_cost(overhead=0.5)  # attention at the GEMM rate: 2 (i + 1) s a token
    bound = sequential_bound(REQUESTS, overlap, 1000)
    attention = 2 * 9
    assert bound.makespan_s == pytest.approx(max(8 + attention, 4 + 56) + 2)
    # nothing overlapping (CPUs): the sum
    additive = toy_cost(overhead=0.5, overlap=False)
    assert sequential_bound(REQUESTS, additive, 1000).makespan_s == pytest.approx(
        8 + attention + 4 + 56 + 2
    )


def test_a_run_of_exactly_the_fewest_steps_loses_nothing_to_steps() -> None:
    """One request: it takes exactly d steps, so the gap has no extra steps in it, and the
    terms add up to the makespan."""
    requests = [SimRequest("a", [1, 2], 3)]
    config = SimConfig(block_size=2, kv_capacity_tokens=64)
    result = simulate(requests, [0], VLLM_TOY, config)
    bound = sequential_bound(requests, VLLM_TOY, 64)
    gap = sequential_gap(result, bound, VLLM_TOY)
    assert result.n_steps == bound.n_min_steps == 3
    assert gap.extra_steps_overhead_s == 0 and gap.extra_steps_weights_s == 0
    assert sum(gap.terms.values()) == pytest.approx(result.makespan_s)
    assert result.makespan_s >= bound.makespan_s


def test_t_seq_is_above_t_opt_on_the_fitted_vllm_model() -> None:
    """T_opt is the bound of an engine that overlaps attention with the GEMMs: on vLLM's
    step model the sequential bound is the tighter one."""
    cost = default_cost()
    requests = [SimRequest(f"r{i}", list(range(i % 7, 200 + i)), 50 + 13 * i) for i in range(40)]
    bounds = estimated_bounds([r.prompt_token_ids for r in requests], [50.0] * 40, cost)
    assert bounds is not None and bounds.t_opt_s < bounds.t_seq_s
    exact = sequential_bound(requests, cost)
    assert exact.makespan_s > optimal_makespan_s(requests, cost)
    assert estimated_bounds([], [], cost) is None
