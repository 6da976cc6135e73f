"""A KV block pool with a block-level prefix cache, counted rather than addressed (compiled).

Invariant: num_free + (blocks held by running requests) == capacity. A cached block (a dense
id from block_hashes.py) is either referenced by running requests (ref > 0) or free and
evictable (ref == 0); the free blocks form one LRU queue, as vLLM v1's free block queue:
allocation takes from the head, evicting a cached block it takes; freed blocks join the tail.
Blocks without a hash (outputs, partial blocks, duplicates) are kept as counted runs, since
nothing can ever hit them. Stale queue entries (a cached block hit again while free) are
skipped lazily.

The queue is a ring of (block id, stamp) entries, or (-1, count) for a run of anonymous
blocks. Compacting it (dropping stale entries, merging adjacent runs) leaves at most
2 * min(ids, capacity) + 1 entries, so a ring twice that size never overflows and is
compacted at most once per that many entries pushed; its memory follows the prompts' distinct
blocks, not the cache size (a toy cost model has ~3e7 blocks of cache).
The functions are compiled with numba and mutate the pool in place.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

# cached per file (nothing here calls another file); no reference counting: see scheduler.py
_jit = numba.njit(cache=True, _nrt=False)
_ANON = -1  # queue key of a run of anonymous blocks
# meta fields
_FREE, _CAPACITY, _HEAD, _COUNT, _STAMP = 0, 1, 2, 3, 4


class BlockPool(NamedTuple):
    """The pool's state: per block id, the LRU ring, and counters (see the module docstring)."""

    cached: np.ndarray  # bool per id: the block is in the prefix cache
    ref: np.ndarray  # int64 per id: running requests holding it
    stamp: np.ndarray  # int64 per id: stamp of its valid queue entry while free; 0: none
    queue_key: np.ndarray  # int64 ring: block id, or _ANON
    queue_value: np.ndarray  # int64 ring: the entry's stamp, or the run's block count
    meta: np.ndarray  # int64: num_free, capacity, ring head, ring count, last stamp


def new_pool(capacity_blocks: int, n_ids: int) -> BlockPool:
    """An empty pool of `capacity_blocks` blocks for prompts with `n_ids` distinct blocks."""
    if capacity_blocks < 1:
        raise ValueError(f"KV cache must hold at least one block, got {capacity_blocks}")
    ring = 4 * min(n_ids, capacity_blocks) + 8
    pool = BlockPool(
        cached=np.zeros(n_ids, dtype=np.bool_),
        ref=np.zeros(n_ids, dtype=np.int64),
        stamp=np.zeros(n_ids, dtype=np.int64),
        queue_key=np.full(ring, _ANON, dtype=np.int64),
        queue_value=np.zeros(ring, dtype=np.int64),
        meta=np.array([capacity_blocks, capacity_blocks, 0, 1, 0], dtype=np.int64),
    )
    pool.queue_value[0] = capacity_blocks  # one run of never-used blocks
    return pool


@_jit
def capacity(pool: BlockPool) -> int:
    return pool.meta[_CAPACITY]


@_jit
def num_free(pool: BlockPool) -> int:
    return pool.meta[_FREE]


@_jit
def num_used(pool: BlockPool) -> int:
    return pool.meta[_CAPACITY] - pool.meta[_FREE]


@_jit
def longest_hit(pool: BlockPool, blocks: np.ndarray, max_blocks: int) -> int:
    """Number of leading `blocks` (at most max_blocks) that are cached."""
    limit = min(max_blocks, len(blocks))
    n = 0
    while n < limit and pool.cached[blocks[n]]:
        n += 1
    return n


@_jit
def num_evictable(pool: BlockPool, blocks: np.ndarray) -> int:
    """How many of these cached blocks are free (a hit on them takes them off the queue)."""
    n = 0
    for b in blocks:
        if pool.ref[b] == 0:
            n += 1
    return n


@_jit
def touch(pool: BlockPool, blocks: np.ndarray) -> None:
    """Take a reference on cached blocks; free ones leave the queue (their entry goes stale)."""
    for b in blocks:
        if pool.ref[b] == 0:
            pool.meta[_FREE] -= 1
            pool.stamp[b] = 0
        pool.ref[b] += 1


@_jit
def allocate(pool: BlockPool, n: int) -> None:
    """Take n free blocks from the LRU head, evicting the cached ones taken."""
    meta, keys, values = pool.meta, pool.queue_key, pool.queue_value
    if n > meta[_FREE]:
        raise RuntimeError("allocate: more blocks than are free")
    meta[_FREE] -= n
    size = len(keys)
    while n > 0:
        head = meta[_HEAD]
        key, value = keys[head], values[head]
        if key == _ANON and value > n:
            values[head] = value - n
            return
        meta[_HEAD] = (head + 1) % size
        meta[_COUNT] -= 1
        if key == _ANON:
            n -= value
        elif pool.stamp[key] == value:  # a valid entry: evict the cached block
            pool.stamp[key] = 0
            pool.cached[key] = False
            n -= 1


@_jit
def register(pool: BlockPool, block: int) -> bool:
    """Make a just-computed full block shareable, held once.

    Returns False when an equal block is already cached: the caller's copy stays a private
    duplicate.
    """
    if pool.cached[block]:
        return False
    pool.cached[block] = True
    pool.ref[block] = 1
    return True


@_jit
def free(pool: BlockPool, blocks: np.ndarray, held: np.ndarray, num_private: int) -> None:
    """Release a request's blocks, tail first as vLLM does: its private ones, then the cached
    blocks[i] it holds (held[i], cleared here) from the last to the first."""
    meta = pool.meta
    if num_private:
        _push(pool, _ANON, num_private)
        meta[_FREE] += num_private
    for i in range(len(blocks) - 1, -1, -1):
        if not held[i]:
            continue
        held[i] = False
        b = blocks[i]
        pool.ref[b] -= 1
        if pool.ref[b] == 0:
            meta[_STAMP] += 1
            pool.stamp[b] = meta[_STAMP]
            _push(pool, b, meta[_STAMP])
            meta[_FREE] += 1


@_jit
def _push(pool: BlockPool, key: int, value: int) -> None:
    meta, keys, values = pool.meta, pool.queue_key, pool.queue_value
    size = len(keys)
    if key == _ANON and meta[_COUNT] > 0:
        tail = (meta[_HEAD] + meta[_COUNT] - 1) % size
        if keys[tail] == _ANON:  # two adjacent runs are one run
            values[tail] += value
            return
    if meta[_COUNT] == size:
        _compact(pool)
        if meta[_COUNT] == size:
            raise RuntimeError("KV block queue overflow")
    at = (meta[_HEAD] + meta[_COUNT]) % size
    keys[at] = key
    values[at] = value
    meta[_COUNT] += 1


@_jit
def _compact(pool: BlockPool) -> None:
    """Drop stale entries and merge adjacent runs, in place and in order (same semantics)."""
    meta, keys, values = pool.meta, pool.queue_key, pool.queue_value
    size, head = len(keys), meta[_HEAD]
    kept = 0
    for i in range(meta[_COUNT]):
        at = (head + i) % size
        key, value = keys[at], values[at]
        if key != _ANON and pool.stamp[key] != value:
            continue
        last = (head + kept - 1) % size
        if key == _ANON and kept > 0 and keys[last] == _ANON:
            values[last] += value
            continue
        to = (head + kept) % size
        keys[to] = key
        values[to] = value
        kept += 1
    meta[_COUNT] = kept
