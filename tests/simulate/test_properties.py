"""Invariants on random small workloads: capacity, completion, T_opt, skip-ahead."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from blend.simulate import SimConfig, SimRequest, optimal_makespan_s, simulate
from tests.simulate.conftest import toy_cost


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
HARDWARE = st.tuples(
    st.sampled_from([(1e15, 1.0, 0.0), (0.5, 1e3, 0.0), (2.0, 3.0, 0.1), (40.0, 1.0, 0.0)]),
    st.booleans(),
).map(lambda pair: (*pair[0], pair[1]))


@settings(max_examples=150, deadline=None)
@given(workloads(), HARDWARE)
def test_invariants(workload: tuple, hardware: tuple) -> None:
    requests, order, config = workload
    cost = toy_cost(*hardware)
    result = simulate(requests, order, cost, config)  # raises if a request is left short
    assert result.output_tokens == sum(r.output_len for r in requests)
    assert result.peak_kv_blocks_used <= result.kv_capacity_blocks
    assert result.makespan_s >= optimal_makespan_s(requests, cost) * (1 - 1e-9)
    parts = result.overhead_s + result.compute_bound_s + result.memory_bound_s
    assert abs(result.makespan_s - parts) <= 1e-9 * max(1.0, result.makespan_s)


@settings(max_examples=150, deadline=None)
@given(workloads(), HARDWARE)
def test_skip_ahead_equals_stepping(workload: tuple, hardware: tuple) -> None:
    requests, order, config = workload
    cost = toy_cost(*hardware)
    fast = dataclasses.asdict(simulate(requests, order, cost, config, skip_ahead=True))
    slow = dataclasses.asdict(simulate(requests, order, cost, config, skip_ahead=False))
    for key, value in fast.items():
        if isinstance(value, float):
            assert abs(value - slow[key]) <= 1e-9 * max(1.0, abs(slow[key])), key
        else:
            assert value == slow[key], key
