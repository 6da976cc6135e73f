"""A KV block pool with a block-level prefix cache, counted rather than addressed.

Invariant: num_free + (blocks held by running requests) == capacity. A cached (hashed) block
is either referenced by running requests (ref > 0) or free and evictable (ref == 0); the free
blocks form one LRU queue, as vLLM v1's free block queue: allocation takes from the head,
evicting a cached block it takes; freed blocks join the tail. Blocks without a hash (outputs,
partial blocks, duplicates) are kept as counted runs, since nothing can ever hit them.
Stale queue entries (a cached block hit again while free) are skipped lazily.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np


def prompt_block_hashes(prompt: Sequence[int] | np.ndarray, block_size: int) -> list[int]:
    """Chained hashes of the prompt's full blocks: block i's hash covers tokens [0, (i+1)*bs).

    Equal hashes mean equal prefixes (up to Python hash collisions), as in vLLM's prefix cache.
    """
    tokens = np.asarray(prompt, dtype=np.int64)
    n_full = len(tokens) // block_size
    rows = tokens[: n_full * block_size].reshape(n_full, block_size)
    hashes: list[int] = []
    parent = 0
    for row in rows:
        parent = hash((parent, row.tobytes()))
        hashes.append(parent)
    return hashes


class KVBlockPool:
    """Free-block accounting and the prefix cache of one simulated engine."""

    def __init__(self, capacity_blocks: int) -> None:
        if capacity_blocks < 1:
            raise ValueError(f"KV cache must hold at least one block, got {capacity_blocks}")
        self.capacity = capacity_blocks
        self.num_free = capacity_blocks
        self._ref: dict[int, int] = {}  # cached block hash -> running requests holding it
        self._stamp: dict[int, int] = {}  # free cached block -> stamp of its valid queue entry
        # Entries: (hash, stamp) for one cached block, or (None, count) for anonymous blocks.
        self._queue: deque[tuple[int | None, int]] = deque([(None, capacity_blocks)])
        self._next_stamp = 0

    @property
    def num_used(self) -> int:
        return self.capacity - self.num_free

    def longest_hit(self, hashes: Sequence[int], max_blocks: int) -> int:
        """Number of leading blocks of `hashes` (at most max_blocks) that are cached."""
        n = 0
        limit = min(max_blocks, len(hashes))
        ref = self._ref
        while n < limit and hashes[n] in ref:
            n += 1
        return n

    def num_evictable(self, hashes: Sequence[int]) -> int:
        """How many of these cached blocks are free (a hit on them takes them off the queue)."""
        ref = self._ref
        return sum(1 for h in hashes if ref[h] == 0)

    def touch(self, hashes: Sequence[int]) -> None:
        """Take a reference on cached blocks (mutates the pool); free ones leave the queue."""
        ref = self._ref
        for h in hashes:
            if ref[h] == 0:
                self.num_free -= 1
                del self._stamp[h]  # its queue entry is stale from now on
            ref[h] += 1

    def allocate(self, n: int) -> None:
        """Take n free blocks from the LRU head (mutates the pool), evicting cached ones."""
        if n > self.num_free:
            raise RuntimeError(f"allocate({n}) with {self.num_free} free blocks")
        self.num_free -= n
        queue, ref, stamp = self._queue, self._ref, self._stamp
        while n > 0:
            key, value = queue[0]
            if key is None:
                taken = min(value, n)
                if taken == value:
                    queue.popleft()
                else:
                    queue[0] = (None, value - taken)
                n -= taken
                continue
            queue.popleft()
            if stamp.get(key) == value:  # a valid entry: evict the cached block
                del stamp[key]
                del ref[key]
                n -= 1

    def register(self, block_hash: int) -> bool:
        """Make a just-computed full block shareable (mutates the pool).

        Returns False when an equal block is already cached: the caller's copy stays a
        private duplicate.
        """
        if block_hash in self._ref:
            return False
        self._ref[block_hash] = 1
        return True

    def free(self, hashes: Sequence[int], num_private: int) -> None:
        """Release a request's blocks (mutates the pool), tail first as vLLM does."""
        queue = self._queue
        if num_private:
            queue.append((None, num_private))
        self.num_free += num_private
        ref, stamp = self._ref, self._stamp
        for h in reversed(hashes):
            ref[h] -= 1
            if ref[h] == 0:
                self._next_stamp += 1
                stamp[h] = self._next_stamp
                queue.append((h, self._next_stamp))
                self.num_free += 1
