"""Block-level prefix caching: hits, same-step sharing, LRU eviction (block size 4)."""

from __future__ import annotations

import dataclasses

from blend.cost import CostModel
from blend.simulate import SimConfig, SimRequest, simulate
from blend.simulate.kv_cache import KVBlockPool, prompt_block_hashes

CONFIG = SimConfig(block_size=4, kv_capacity_tokens=400)
SHARED = [1, 2, 3, 4, 5, 6, 7, 8]  # two full blocks


def test_second_request_hits_the_two_shared_blocks(memory_bound_cost: CostModel) -> None:
    a = SimRequest("a", (*SHARED, 20, 21), 1)
    b = SimRequest("b", (*SHARED, 30, 31), 1)
    config = dataclasses.replace(CONFIG, max_num_seqs=1)  # b starts after a finished
    result = simulate([a, b], [0, 1], memory_bound_cost, config)
    assert result.prefix_cache_hit_tokens == 8
    assert result.prefix_cache_query_tokens == 20
    assert result.prefix_cache_hit_rate == 0.4
    assert result.computed_tokens == 12


def test_blocks_are_shared_within_the_step_that_computes_them(
    memory_bound_cost: CostModel,
) -> None:
    a = SimRequest("a", (*SHARED, 20, 21), 1)
    b = SimRequest("b", (*SHARED, 30, 31), 1)
    result = simulate([a, b], [0, 1], memory_bound_cost, CONFIG)
    assert result.n_steps == 1
    assert result.prefix_cache_hit_tokens == 8


def test_a_whole_prompt_hit_still_computes_its_last_block(memory_bound_cost: CostModel) -> None:
    # 8 tokens cached, but one token must be computed to sample from: only block 0 hits.
    a = SimRequest("a", tuple(SHARED), 1)
    config = dataclasses.replace(CONFIG, max_num_seqs=1)
    result = simulate([a, a], [0, 1], memory_bound_cost, config)
    assert result.prefix_cache_hit_tokens == 4


def _lru_run(cost: CostModel, capacity_blocks: int) -> int:
    # a: 9 tokens = blocks A0, A1 (cached) + 1 partial; b (other tokens) needs 3 blocks.
    # With 4 blocks, b takes the never-used block, a's partial block and A1 (least recently
    # freed first, tail blocks of a request first): c = a's prompt then hits only A0.
    a = SimRequest("a", (*SHARED, 9), 1)
    b = SimRequest("b", tuple(range(100, 109)), 1)
    c = SimRequest("c", (*SHARED, 9), 1)
    config = SimConfig(block_size=4, kv_capacity_tokens=4 * capacity_blocks, max_num_seqs=1)
    return simulate([a, b, c], [0, 1, 2], cost, config).prefix_cache_hit_tokens


def test_lru_eviction_under_a_tiny_cache(memory_bound_cost: CostModel) -> None:
    assert _lru_run(memory_bound_cost, capacity_blocks=4) == 4
    assert _lru_run(memory_bound_cost, capacity_blocks=8) == 8


def test_pool_accounting() -> None:
    pool = KVBlockPool(4)
    hashes = prompt_block_hashes([1, 2, 3, 4, 5, 6, 7, 8, 9], 4)
    assert len(hashes) == 2
    pool.allocate(3)
    assert pool.register(hashes[0]) and pool.register(hashes[1])
    assert not pool.register(hashes[0])  # an equal block is cached: the copy stays private
    pool.free(hashes, 1)
    assert pool.num_free == 4
    assert pool.longest_hit(hashes, 5) == 2
    assert pool.num_evictable(hashes) == 2
    pool.touch(hashes[:1])
    assert pool.num_free == 3
    pool.allocate(3)  # the never-used block, the private one, then hashes[1] (evicted)
    assert pool.longest_hit(hashes, 5) == 1
    assert pool.num_free == 0
