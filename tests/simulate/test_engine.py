"""The simulator on tiny workloads with hand-worked expectations (block size 4)."""

from __future__ import annotations

import dataclasses

import pytest

from blend.cost import CostModel
from blend.simulate import SimConfig, SimRequest, simulate

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
