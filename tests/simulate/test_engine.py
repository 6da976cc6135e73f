"""The simulator on tiny workloads with hand-worked expectations (block size 4)."""

from __future__ import annotations

import dataclasses

import pytest

from blend.cost.model import CostModel
from blend.simulate import SimConfig, SimRequest, simulate
from tests.support.toys import toy_cost

SMALL = SimConfig(block_size=4, kv_capacity_tokens=400)


def req(name: str, prompt: list[int], output_len: int) -> SimRequest:
    return SimRequest(name, tuple(prompt), output_len)


def test_two_requests_exact_makespan(memory_bound_cost: CostModel) -> None:
    # Step 1: A (4 prompt tokens) and B (3) prefill together; each reads and writes its KV:
    #   (4 + 4) + (3 + 3) = 14 KV tokens * 2 B + 1 weight byte = 29 s. A and B sample a token;
    #   B is done (1 token).
    # Step 2: A decodes: reads 5 KV tokens, writes 1: 6 * 2 + 1 = 13 s; A is done.
    a = req("a", [1, 2, 3, 4], 2)
    b = req("b", [5, 6, 7], 1)
    for skip in (True, False):
        result = simulate([a, b], [0, 1], memory_bound_cost, SMALL, skip_ahead=skip)
        assert result.n_steps == 2
        assert result.makespan_s == pytest.approx(42.0)
        assert (result.input_tokens, result.output_tokens) == (7, 3)
        assert result.computed_tokens == 8  # 7 prompt tokens + 1 decode
        assert result.mean_batch_size == 1.5
        assert result.peak_kv_blocks_used == 2  # step 1: A 1 + B 1; step 2: A 2 (5 tokens)


def test_order_is_fcfs_and_one_at_a_time(memory_bound_cost: CostModel) -> None:
    # With one running request, A then B run back to back: steps = 2 (A) + 1 (B).
    config = dataclasses.replace(SMALL, max_num_seqs=1)
    a = req("a", [1, 2, 3, 4], 2)
    b = req("b", [5, 6, 7], 1)
    result = simulate([a, b], [0, 1], memory_bound_cost, config)
    assert result.n_steps == 3
    # A: 1 + 2*8 = 17 s, then 13 s; B: 1 + 2*6 = 13 s.
    assert result.makespan_s == pytest.approx(43.0)


def test_budget_chunks_a_long_prompt(memory_bound_cost: CostModel) -> None:
    # 10 prompt tokens with a budget of 4 tokens a step: 3 prefill steps (4, 4, 2), then 1 decode.
    config = dataclasses.replace(SMALL, max_num_batched_tokens=4)
    result = simulate([req("a", list(range(10)), 2)], [0], memory_bound_cost, config)
    assert result.n_steps == 4
    assert result.computed_tokens == 11


def test_without_chunked_prefill_a_prompt_over_budget_is_an_error(
    memory_bound_cost: CostModel,
) -> None:
    config = dataclasses.replace(SMALL, max_num_batched_tokens=4, chunked_prefill=False)
    with pytest.raises(ValueError, match="can never be scheduled"):
        simulate([req("a", list(range(10)), 2)], [0], memory_bound_cost, config)


def test_request_larger_than_the_cache_is_an_error(memory_bound_cost: CostModel) -> None:
    config = dataclasses.replace(SMALL, kv_capacity_tokens=8)  # 2 blocks
    with pytest.raises(ValueError, match="more than the whole KV cache"):
        simulate([req("a", [1, 2, 3, 4], 8)], [0], memory_bound_cost, config)


def test_order_must_be_a_permutation(memory_bound_cost: CostModel) -> None:
    with pytest.raises(ValueError, match="permutation"):
        simulate([req("a", [1], 1), req("b", [2], 1)], [0, 0], memory_bound_cost, SMALL)


def test_preemption_happens_and_everyone_finishes(memory_bound_cost: CostModel) -> None:
    # 6 blocks; each request ends with 4 + 7 = 11 tokens = 3 blocks: three cannot all fit.
    config = dataclasses.replace(SMALL, kv_capacity_tokens=24)
    requests = [req(f"r{i}", [10 * i + t for t in range(4)], 8) for i in range(3)]
    for skip in (True, False):
        result = simulate(requests, [0, 1, 2], memory_bound_cost, config, skip_ahead=skip)
        assert result.n_preemptions >= 1
        assert result.output_tokens == 24
        assert result.peak_kv_blocks_used <= 6
        assert result.computed_tokens > 12 + 3 * 7  # recomputation after preemption


def test_cache_smaller_than_a_block_is_an_error(memory_bound_cost: CostModel) -> None:
    config = dataclasses.replace(SMALL, kv_capacity_tokens=3)
    with pytest.raises(ValueError, match="at least one block"):
        simulate([req("a", [1, 2, 3, 4], 1)], [0], memory_bound_cost, config)


def test_drain_is_the_time_after_the_last_admission(memory_bound_cost: CostModel) -> None:
    # One request at a time: A prefills (1 + 2 * 8 = 17 s) and decodes (13 s); B is admitted
    # (the last admission: 1 + 2 * 6 = 13 s), then decodes twice (1 + 2 * 5, 1 + 2 * 6 s).
    config = dataclasses.replace(SMALL, max_num_seqs=1)
    a = req("a", [1, 2, 3, 4], 2)
    b = req("b", [5, 6, 7], 3)
    for skip in (True, False):
        result = simulate([a, b], [0, 1], memory_bound_cost, config, skip_ahead=skip)
        assert result.makespan_s == pytest.approx(67.0)
        assert result.drain_s == pytest.approx(11.0 + 13.0)
        # every step reads the 1-byte weights once (1 s): 5 steps
        assert result.busy_without_weights_s == pytest.approx(67.0 - 5.0)


@pytest.mark.parametrize(("overlap", "busy", "without_weights"), [(True, 52, 51), (False, 82, 80)])
def test_busy_without_weights_by_hand(overlap: bool, busy: float, without_weights: float) -> None:
    # FLOP/s 2, 1 B/s: step 1 prefills A (4 tokens) and B (3): compute (2 * 7 + attention
    # 4 * 4 * 2.5 + 4 * 3 * 2) / 2 = 39 s, memory 1 + 2 * 14 = 29 s; step 2, A decodes:
    # compute 1 s, memory 1 + 2 * 6 = 13 s. Overlap: 39 + 13 = 52 s, without the weights
    # 39 + 12; additive: 68 + 14 = 82 s, without them 67 + 13.
    cost = toy_cost(flops=2.0, bandwidth=1.0, overlap=overlap)
    a = req("a", [1, 2, 3, 4], 2)
    b = req("b", [5, 6, 7], 1)
    for skip in (True, False):
        result = simulate([a, b], [0, 1], cost, SMALL, skip_ahead=skip)
        assert result.makespan_s == pytest.approx(busy)
        assert result.busy_without_weights_s == pytest.approx(without_weights)
        assert result.breakdown()["busy_without_weights_s"] == result.busy_without_weights_s
        assert result.drain_s == pytest.approx(busy - (39.0 if overlap else 68.0))


@pytest.mark.parametrize("overlap", [True, False])
def test_new_totals_equal_stepping_on_long_decodes(overlap: bool) -> None:
    # Decode runs that cross from compute- to memory-bound, blocks running out (preemptions),
    # prompts sharing a prefix: the closed forms equal the step-by-step sums.
    cost = toy_cost(flops=40.0, bandwidth=1.0, overhead=0.25, overlap=overlap)
    requests = [req(f"r{i}", [7, 7, 7, 7, 1, i % 3, 5], 20 + 7 * i) for i in range(9)]
    config = SimConfig(block_size=4, kv_capacity_tokens=4 * 40, max_num_seqs=5)
    fast = simulate(requests, list(range(9)), cost, config)
    slow = simulate(requests, list(range(9)), cost, config, skip_ahead=False)
    assert fast.n_preemptions > 0 and fast.n_steps == slow.n_steps
    assert fast.busy_without_weights_s == pytest.approx(slow.busy_without_weights_s, rel=1e-12)
    assert fast.drain_s == pytest.approx(slow.drain_s, rel=1e-12)
    assert 0 < fast.drain_s < fast.makespan_s
    assert fast.compute_s == pytest.approx(slow.compute_s, rel=1e-12)
    assert fast.kv_s == pytest.approx(slow.kv_s, rel=1e-12)
    assert fast.kv_discarded_tokens == slow.kv_discarded_tokens > 0
