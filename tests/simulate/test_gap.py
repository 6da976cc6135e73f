"""The gap breakdown adds up to the makespan, term by term, and each term means what it says."""

from __future__ import annotations

import numpy as np
import pytest

from bench.workloads.generators import default_cost
from blend.cost.model import CostModel
from blend.cost.step_time import prefill_attention_flops
from blend.simulate import SimConfig, SimRequest, optimal_makespan_s, simulate
from blend.simulate.gap import gap_breakdown, tight_compute_s
from blend.simulate.optimal import dfs_sharing_ratio
from tests.support.toys import toy_cost


def _workload(seed: int, n: int, prompt_max: int, out_max: int) -> list[SimRequest]:
    rng = np.random.default_rng(seed)
    prefixes = [rng.integers(0, 50, 48).tolist() for _ in range(3)]
    requests = []
    for i in range(n):
        own = rng.integers(0, 50, int(rng.integers(1, prompt_max))).tolist()
        prompt = prefixes[i % 3] + own if i % 2 else own
        requests.append(SimRequest(f"r{i}", prompt, int(rng.integers(1, out_max))))
    return requests


CASES = [
    # (cost, config, prompt_max, out_max): compute-bound and memory-bound runs, with and
    # without preemption, on overlapping, additive and attention-after-GEMM hardware.
    (toy_cost(flops=1.0, bandwidth=100.0, overhead=0.5), SimConfig(block_size=4), 200, 4),
    (toy_cost(flops=1e3, bandwidth=1.0), SimConfig(block_size=4), 20, 60),
    (
        toy_cost(flops=50.0, bandwidth=10.0, overhead=0.1),
        SimConfig(block_size=4, kv_capacity_tokens=160, max_num_batched_tokens=64),
        60,
        40,
    ),
    (
        toy_cost(flops=50.0, bandwidth=10.0, overhead=0.1, overlap=False),
        SimConfig(block_size=4, kv_capacity_tokens=160, max_num_batched_tokens=64),
        60,
        40,
    ),
    (
        toy_cost(
            flops=50.0,
            bandwidth=10.0,
            overhead=0.1,
            attention_after_gemm=True,
            roofline_sharpness=2.5,
        ),
        SimConfig(block_size=4, kv_capacity_tokens=160, max_num_batched_tokens=64),
        60,
        40,
    ),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("cost", "config", "prompt_max", "out_max"), CASES)
def test_terms_add_up_to_the_makespan_and_none_is_negative(
    seed: int, cost: CostModel, config: SimConfig, prompt_max: int, out_max: int
) -> None:
    requests = _workload(seed, 30, prompt_max, out_max)
    order = np.random.default_rng(seed).permutation(len(requests)).tolist()
    result = simulate(requests, order, cost, config)
    sharing = dfs_sharing_ratio(requests)
    t_opt = optimal_makespan_s(requests, cost, sharing)
    gap = gap_breakdown(result, requests, cost, sharing, t_opt)
    assert sum(gap.terms.values()) == pytest.approx(result.makespan_s, rel=1e-9)
    for name, seconds in gap.terms.items():
        assert seconds >= -1e-9 * result.makespan_s, name
    assert 0.0 <= gap.drain_s <= result.makespan_s
    assert (gap.kv_discarded_tokens > 0) == (result.n_preemptions > 0)


def test_one_prefill_step_by_hand() -> None:
    """One 32-token prompt, one output token, llama-3.1-8b on a100-80g (vLLM's step model:
    attention after the GEMMs, a soft roofline knee): a single step whose GEMMs (2.4 ms) run
    under the weight read (9.6 ms), with the KV traffic and attention after them."""
    cost = default_cost()
    model, hw = cost.model, cost.hardware
    assert hw.attention_after_gemm and hw.roofline_sharpness > 0
    request = SimRequest("only", list(range(32)), 1)
    result = simulate([request], [0], cost)
    t_opt = optimal_makespan_s([request], cost, 0.0)
    gap = gap_breakdown(result, [request], cost, 0.0, t_opt)

    gemm_s = 2 * model.n_params * 32 / hw.effective_flops
    attention_s = prefill_attention_flops(cost, 32, 0) / hw.effective_attention_flops
    weights_s = model.weight_bytes / hw.effective_bandwidth
    kv_s = 2 * 32 * model.kv_bytes_per_token / hw.effective_bandwidth  # writes 32, reads 32
    k = hw.roofline_sharpness
    knee_s = weights_s * (1 + (gemm_s / weights_s) ** k) ** (1 / k)  # soft max(gemm, weights)
    assert result.makespan_s == pytest.approx(hw.step_overhead_s + knee_s + kv_s + attention_s)
    assert gap.bound_side == "compute"
    assert tight_compute_s([request], cost, 0.0) == pytest.approx(gemm_s)
    assert gap.optimal_s + gap.bound_decode_sharing_s == pytest.approx(gemm_s)
    assert gap.extra_work_s == pytest.approx(attention_s)
    assert gap.weight_reads_s == pytest.approx(knee_s - gemm_s)
    assert gap.other_side_s == pytest.approx(kv_s)  # not hidden: it runs after the GEMMs
    assert gap.overhead_s == pytest.approx(hw.step_overhead_s)
    assert gap.drain_s == 0.0  # the only step admitted the request: nothing after it


def test_the_bound_shares_decode_tokens_and_the_tight_bound_does_not() -> None:
    """Two requests with the same 64-token prompt and 9 outputs each: s = 1/2 of the prompt
    tokens; T_opt's formula also halves the 16 fed-back output tokens, the tight bound not."""
    cost = toy_cost(flops=1.0, bandwidth=1e9)  # compute-bound: 2 s per token, memory free
    prompt = list(range(64))
    requests = [SimRequest("a", prompt, 9), SimRequest("b", prompt, 9)]
    sharing = dfs_sharing_ratio(requests)
    assert sharing == pytest.approx(0.5)
    t_opt = optimal_makespan_s(requests, cost, sharing)
    assert t_opt == pytest.approx(0.5 * 2 * (64 + 8) * 2.0)
    assert tight_compute_s(requests, cost, sharing) == pytest.approx((64 + 16) * 2.0)
    result = simulate(requests, [0, 1], cost, SimConfig(block_size=16))
    gap = gap_breakdown(result, requests, cost, sharing, t_opt)
    assert gap.bound_decode_sharing_s == pytest.approx(0.5 * 16 * 2.0)
