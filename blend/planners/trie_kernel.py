"""The prefix trie's node loop (tree._nodes_from_lcp), compiled: the same nodes, numbered the
same way, without a Python object per node (at 10M prompts the loop's lists held ~3 GB).

Imported only for large inputs (tree.COMPILED_FROM requests), so small plans never import
numba: vLLM 0.32 cannot start an engine in a process that imported it (engines/vllm_compat.py).
"""

from __future__ import annotations

import numba
import numpy as np

from blend.planners.arrays import node_id_type


def nodes_from_lcp(
    sorted_lengths: np.ndarray, lcp: np.ndarray, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(parent, depth, first_rank, leaf_request) of the trie of sorted strings, as int32
    where every node id fits (else int64): four arrays over ~2 nodes a prompt, the largest
    the estimates hold at 10M prompts."""
    like = np.empty(0, dtype=node_id_type(2 * len(order) + 1))
    return _nodes(  # type: ignore[no-any-return]
        np.ascontiguousarray(sorted_lengths, dtype=np.int64),
        np.ascontiguousarray(lcp, dtype=np.int64),
        np.ascontiguousarray(order, dtype=np.int64),
        like,
    )


@numba.njit(cache=True)  # type: ignore[misc]
def _nodes(
    sorted_lengths: np.ndarray, lcp: np.ndarray, requests: np.ndarray, like: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # every prompt adds its leaf and at most one inner node: 2n + 1 nodes at most; the
    # arrays in like's type
    n = len(sorted_lengths)
    cap = 2 * n + 1
    parent = np.empty(cap, like.dtype)
    depth = np.empty(cap, like.dtype)
    first = np.empty(cap, like.dtype)
    leaf = np.empty(cap, like.dtype)
    stack = np.empty(cap + 1, like.dtype)  # the path from the root to the last leaf added
    parent[0], depth[0], first[0], leaf[0] = -1, 0, 0, -1
    count = 1
    height = 0  # index of the stack's top
    stack[0] = 0
    for k in range(n):
        shared = lcp[k]
        last = -1
        while depth[stack[height]] > shared:
            last = stack[height]
            height -= 1
        top = stack[height]
        if depth[top] < shared:  # the path passes depth `shared` inside last's edge: split it
            node = count
            count += 1
            parent[node], depth[node], first[node], leaf[node] = top, shared, first[last], -1
            parent[last] = node
            top = node
            height += 1
            stack[height] = node
        elif leaf[top] >= 0:  # the previous prompt ends exactly here
            up = parent[top]
            if depth[up] == shared:  # it is an empty-edge leaf: hang beside it
                height -= 1
                top = up
            else:  # turn it into an inner node with the leaf as an empty-edge child
                node = count
                count += 1
                parent[node], depth[node], first[node], leaf[node] = up, shared, first[top], -1
                parent[top] = node
                stack[height] = node
                top = node
        node = count
        count += 1
        parent[node], depth[node], first[node], leaf[node] = top, sorted_lengths[k], k, requests[k]
        height += 1
        stack[height] = node
    # the used part of each array, not a copy: the pages past `count` were never written, so
    # they hold no memory (a copy would hold the nodes twice at once: ~0.5 GB at 10M prompts)
    return parent[:count], depth[:count], first[:count], leaf[:count]
