"""Vectorised tree helpers over a parent array (node 0 is the root, parent[0] = -1).

Invariant: every helper visits nodes level by level (a level = nodes with the same number of
ancestors), so each numpy pass is O(nodes) and a pass never reads a value it has not finished.
"""

from __future__ import annotations

import numpy as np


def node_levels(parent: np.ndarray) -> np.ndarray:
    """Number of ancestors of each node, by pointer jumping (O(nodes x log height))."""
    level = (parent >= 0).astype(np.int64)
    jump = parent.copy()
    while True:
        active = np.flatnonzero(jump >= 0)
        if active.size == 0:
            return level
        up = jump[active]
        new_level = level.copy()
        new_level[active] += level[up]
        new_jump = jump.copy()
        new_jump[active] = jump[up]
        level, jump = new_level, new_jump


def level_order(parent: np.ndarray) -> list[np.ndarray]:
    """Node ids grouped by level, root level first."""
    level = node_levels(parent)
    order = np.argsort(level, kind="stable")
    bounds = np.searchsorted(level[order], np.arange(int(level.max(initial=0)) + 2))
    return [order[bounds[k] : bounds[k + 1]] for k in range(len(bounds) - 1)]


def subtree_sums(parent: np.ndarray, levels: list[np.ndarray], values: np.ndarray) -> np.ndarray:
    """Sum of `values` over each node's subtree (the node included)."""
    acc = np.asarray(values, dtype=np.float64).copy()
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
