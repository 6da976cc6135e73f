"""Invariants on random small workloads: capacity, completion, T_opt, T_seq, skip-ahead."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blend.admission import InOrderAdmission
from blend.simulate import SimConfig, SimRequest, optimal_makespan_s, simulate
from blend.simulate.engine import simulate_online
from blend.simulate.gap import sequential_gap
from blend.simulate.sequential_bound import sequential_bound
from tests.support.toys import toy_cost


@st.composite
def workloads(draw: st.DrawFn) -> tuple[list[SimRequest], list[int], SimConfig]:
    prefixes = draw(st.lists(st.lists(st.integers(0, 3), max_size=12), min_size=1, max_size=3))
    n = draw(st.integers(1, 8))
    requests = []
    for i in range(n):
        prefix = prefixes[draw(st.integers(0, len(prefixes) - 1))]
        suffix = draw(st.lists(st.integers(0, 3), min_size=1, max_size=6))
        requests.append(SimRequest(f"r{i}", (*prefix, *suffix), draw(st.integers(1, 12))))
    order = draw(st.permutations(range(n)))
    block_size = draw(st.sampled_from([2, 4]))
    longest = max(len(r.prompt_token_ids) + r.output_len for r in requests)
    min_blocks = -(-longest // block_size)
    chunked = draw(st.booleans())
    config = SimConfig(
        block_size=block_size,
        kv_capacity_tokens=block_size * (min_blocks + draw(st.integers(0, 12))),
        max_num_seqs=draw(st.integers(1, 4)),
        max_num_batched_tokens=draw(st.integers(1, 16)) + (0 if chunked else longest),
        chunked_prefill=chunked,
        enable_prefix_caching=draw(st.booleans()),
    )
    return requests, list(order), config


# (FLOP/s, bytes/s, step overhead s, overlap compute with memory)
# (flops, bandwidth, overhead) and a step model (see tests/simulate/test_kernels.py)
HARDWARE = st.tuples(
    st.sampled_from([(1e15, 1.0, 0.0), (0.5, 1e3, 0.0), (2.0, 3.0, 0.1), (40.0, 1.0, 0.0)]),
    st.sampled_from(
        [
            {"overlap": False},
            {"overlap": True},
            {"overlap": True, "attention_after_gemm": True, "roofline_sharpness": 2.5},
        ]
    ),
)


@settings(max_examples=150, deadline=None)
@given(workloads(), HARDWARE)
def test_invariants(workload: tuple, hardware: tuple) -> None:
    requests, order, config = workload
    cost = toy_cost(*hardware[0], **hardware[1])
    result = simulate(requests, order, cost, config)  # raises if a request is left short
    assert result.output_tokens == sum(r.output_len for r in requests)
    assert result.peak_kv_blocks_used <= result.kv_capacity_blocks
    assert result.makespan_s >= optimal_makespan_s(requests, cost) * (1 - 1e-9)
    parts = result.overhead_s + result.compute_bound_s + result.memory_bound_s
    assert abs(result.makespan_s - parts) <= 1e-9 * max(1.0, result.makespan_s)
    assert 0.0 < result.mean_kv_occupancy <= 1.0
    # T_seq holds for every order and engine setting, on every step model
    bound = sequential_bound(requests, cost, config.kv_capacity_tokens)
    assert result.makespan_s >= bound.makespan_s * (1 - 1e-9)
    assert result.n_steps >= bound.n_min_steps
    gap = sequential_gap(result, bound, cost)
    assert sum(gap.terms.values()) == pytest.approx(result.makespan_s, rel=1e-9, abs=1e-12)
    assert all(v >= -1e-9 * max(1.0, result.makespan_s) for v in gap.terms.values()), gap


@settings(max_examples=150, deadline=None)
@given(workloads(), HARDWARE)
def test_skip_ahead_equals_stepping(workload: tuple, hardware: tuple) -> None:
    requests, order, config = workload
    cost = toy_cost(*hardware[0], **hardware[1])
    fast = dataclasses.asdict(simulate(requests, order, cost, config, skip_ahead=True))
    slow = dataclasses.asdict(simulate(requests, order, cost, config, skip_ahead=False))
    for key, value in fast.items():
        if isinstance(value, float):
            assert abs(value - slow[key]) <= 1e-9 * max(1.0, abs(slow[key])), key
        elif isinstance(value, np.ndarray):
            assert np.array_equal(value, slow[key]), key
        else:
            assert value == slow[key], key


@settings(max_examples=150, deadline=None)
@given(workloads(), HARDWARE, st.integers(1, 4))
def test_online_in_order_admission_equals_the_static_order(
    workload: tuple, hardware: tuple, window_seqs: int
) -> None:
    """Feeding the order through the admission loop, a window of >= 2 x max_num_seqs ahead,
    is the same run as queueing the whole order at once (vLLM admits first come, first
    served, so requests beyond the window never matter)."""
    requests, order, config = workload
    cost = toy_cost(*hardware[0], **hardware[1])
    static = dataclasses.asdict(simulate(requests, order, cost, config))
    window = (1 + window_seqs) * config.max_num_seqs
    policy = InOrderAdmission(order, window=window)
    online = dataclasses.asdict(simulate_online(requests, policy, cost, config))
    for key, value in static.items():
        if isinstance(value, float):
            assert abs(value - online[key]) <= 1e-9 * max(1.0, abs(online[key])), key
        elif isinstance(value, np.ndarray):
            assert np.array_equal(value, online[key]), key
        else:
            assert value == online[key], key
