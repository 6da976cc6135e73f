"""Vectorised tree helpers over a parent array (node 0 is the root, parent[0] = -1).

Invariant: every helper visits nodes level by level (a level = nodes with the same number of
ancestors), so each numpy pass is O(nodes) and a pass never reads a value it has not finished.
"""

from __future__ import annotations

import numpy as np


def node_levels(parent: np.ndarray) -> np.ndarray:
    """Number of ancestors of each node, by pointer jumping (O(nodes x log height)).

    Updated in place: a fancy-indexed right-hand side is read (copied) before it is written,
    so every node still jumps from the values of the previous round."""
    level = (parent >= 0).astype(np.int64)
    jump = parent.copy()
    while True:
        active = np.flatnonzero(jump >= 0)
        if active.size == 0:
            return level
        up = jump[active]
        level[active] += level[up]
        jump[active] = jump[up]


def level_order(parent: np.ndarray) -> list[np.ndarray]:
    """Node ids grouped by level, root level first (32-bit ids where they fit: the levels
    live as long as the estimates' arrays over a trie of ~20M nodes at 10M prompts)."""
    level = node_levels(parent)
    order = np.argsort(level, kind="stable").astype(node_id_type(len(parent)), copy=False)
    bounds = np.searchsorted(level[order], np.arange(int(level.max(initial=0)) + 2))
    return [order[bounds[k] : bounds[k + 1]] for k in range(len(bounds) - 1)]


def node_id_type(n_nodes: int) -> type[np.signedinteger]:
    """The narrowest of int32 and int64 that holds every node id of a tree (and -1)."""
    return np.int32 if n_nodes < np.iinfo(np.int32).max else np.int64


def subtree_sums(parent: np.ndarray, levels: list[np.ndarray], values: np.ndarray) -> np.ndarray:
    """Sum of `values` over each node's subtree (the node included)."""
    return subtree_sums_into(parent, levels, np.asarray(values, dtype=np.float64).copy())


def subtree_sums_into(parent: np.ndarray, levels: list[np.ndarray], acc: np.ndarray) -> np.ndarray:
    """subtree_sums computed in `acc` (float64, a value per node, overwritten): no copy of a
    node array, for callers that no longer need the values."""
    for nodes in reversed(levels[1:]):  # deepest first: children are final before parents
        np.add.at(acc, parent[nodes], acc[nodes])
    return acc


def preorder_positions(
    parent: np.ndarray, levels: list[np.ndarray], sibling_rank: np.ndarray
) -> np.ndarray:
    """Position of each node in a depth-first walk visiting siblings by ascending rank.

    pos(v) = pos(parent) + 1 + (nodes in the subtrees of v's siblings ranked before v).
    """
    n = len(parent)
    size = subtree_sums(parent, levels, np.ones(n))
    order = np.lexsort((sibling_rank, parent))[1:]  # the root (parent -1) sorts first
    sizes = size[order]
    running = np.cumsum(sizes) - sizes
    group_start = np.ones(len(order), dtype=bool)
    group_start[1:] = parent[order][1:] != parent[order][:-1]
    start_value = np.maximum.accumulate(np.where(group_start, running, 0.0))
    offset = np.zeros(n)
    offset[order] = running - start_value
    pos = np.zeros(n)
    for nodes in levels[1:]:
        pos[nodes] = pos[parent[nodes]] + 1.0 + offset[nodes]
    return pos
