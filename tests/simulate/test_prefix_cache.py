"""Block-level prefix caching: hits, same-step sharing, LRU eviction (block size 4)."""

from __future__ import annotations

import dataclasses

import numpy as np

from blend.cost.model import CostModel
from blend.simulate import SimConfig, SimRequest, simulate
from blend.simulate import kv_cache as kv

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
    pool = kv.new_pool(4, n_ids=2)
    blocks = np.array([0, 1])  # block ids of one prompt's two full blocks
    kv.allocate(pool, 3)
    assert kv.register(pool, 0) and kv.register(pool, 1)
    assert not kv.register(pool, 0)  # an equal block is cached: the copy stays private
    held = np.array([True, True])
    kv.free(pool, blocks, held, 1)
    assert kv.num_free(pool) == 4 and not held.any()
    assert kv.longest_hit(pool, blocks, 5) == 2
    assert kv.num_evictable(pool, blocks) == 2
    kv.touch(pool, blocks[:1])
    assert kv.num_free(pool) == 3
    kv.allocate(pool, 3)  # the never-used block, the private one, then block 1 (evicted)
    assert kv.longest_hit(pool, blocks, 5) == 1
    assert kv.num_free(pool) == 0


def test_queue_compaction_keeps_the_lru_order() -> None:
    # A cached block freed and hit again 100 times leaves 99 stale queue entries, more than
    # the ring holds (4 * 2 ids + 8): pushing compacts it, and the LRU order survives.
    pool = kv.new_pool(3, n_ids=2)
    blocks = np.array([0, 1])
    kv.allocate(pool, 2)
    assert kv.register(pool, 0) and kv.register(pool, 1)
    held = np.array([True, False])
    for _ in range(100):
        kv.free(pool, blocks, held, 0)  # block 0 joins the tail
        kv.touch(pool, blocks[:1])  # and is taken again: its entry goes stale
        held[0] = True
    assert kv.num_free(pool) == 1
    kv.free(pool, blocks[1:], np.array([True]), 0)  # block 1, then block 0, join the tail
    kv.free(pool, blocks, held, 0)
    assert kv.num_free(pool) == 3
    kv.allocate(pool, 2)  # the never-used block, then block 1
    assert kv.longest_hit(pool, blocks[1:], 1) == 0
    assert kv.longest_hit(pool, blocks, 1) == 1
    assert len(pool.queue_key) == 16
