"""Output-length estimates from a warm-up sample.

Invariant: a request's estimate is its own length when the planner knows it, else the mean
known length of its nearest ancestor subtree that holds a known request, else its max_tokens.

How lengths are revealed (our design): `PlanRequest.output_len` is the true output length,
set only where the planner may know it. The warm-up sample is a seeded random sample of
`warmup_fraction` of the requests (at least `min_warmup`), plus one request of each large
prefix group the sample missed (see `warmup_indices`). The plan runs it first, so its lengths
are observed before the rest is scheduled. A caller that knows the true lengths (the
simulator) reveals the sample's with `reveal_warmup`, or every length for oracle runs; the
real pipeline knows none, so every estimate falls back to max_tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from blend.planners.base import PlanRequest
from blend.planners.blendserve.arrays import level_order, subtree_sums
from blend.tree import CompactTrie, build_compact_trie

MIN_WARMUP = 4  # requests in a warm-up sample at least (fewer only if there are fewer)
MIN_GROUP = 16  # prefix groups this large get at least one warm-up request


def prefix_groups(trie: CompactTrie) -> np.ndarray:
    """Top-level prefix groups: children of the first node below the root that branches
    (a chain shared by every prompt, like a chat template, is looked through)."""
    parent = trie.parent
    counts = np.bincount(parent[1:], minlength=len(parent))
    node = 0
    while counts[node] == 1:
        (child,) = np.flatnonzero(parent == node)
        if trie.leaf_request[child] >= 0:
            break
        node = int(child)
    return np.flatnonzero(parent == node)


def group_members(trie: CompactTrie, num_leaves: np.ndarray, node: int) -> np.ndarray:
    """Request indices under `node` in token (DFS) order (the trie as built, before splits)."""
    start = int(trie.first_rank[node])
    return trie.sorted_order[start : start + int(num_leaves[node])]


def warmup_indices(
    trie: CompactTrie,
    warmup_fraction: float,
    seed: int,
    min_warmup: int = MIN_WARMUP,
    min_group: int = MIN_GROUP,
) -> np.ndarray:
    """Request indices of the warm-up sample, in the order they run (seeded, no repeats).

    A uniform sample of warmup_fraction x n (at least min_warmup), plus one random request
    of every prefix group of >= min_group requests that the uniform sample missed: a rare
    kind of request (a few long-output prompts among thousands) still gets measured.
    """
    if not 0.0 <= warmup_fraction <= 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1], got {warmup_fraction}")
    n = len(trie.lengths)
    if warmup_fraction == 0.0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    k = min(n, max(min_warmup, math.ceil(warmup_fraction * n)))
    sample = rng.choice(n, size=k, replace=False).astype(np.int64)
    sampled = np.zeros(n, dtype=bool)
    sampled[sample] = True
    levels = level_order(trie.parent)
    num_leaves = subtree_sums(trie.parent, levels, (trie.leaf_request >= 0).astype(np.float64))
    extra = []
    for group in prefix_groups(trie):
        if num_leaves[group] >= min_group:
            members = group_members(trie, num_leaves, int(group))
            if not sampled[members].any():
                extra.append(int(members[rng.integers(len(members))]))
    return np.concatenate((sample, np.asarray(extra, dtype=np.int64)))


def reveal_warmup(
    requests: Sequence[PlanRequest],
    output_lens: Sequence[int],
    warmup_fraction: float,
    seed: int,
) -> list[PlanRequest]:
    """Copies of `requests` where only the warm-up sample carries its true output length
    (what a simulation caller passes to a planner run without oracle lengths)."""
    trie = build_compact_trie([r.prompt_token_ids for r in requests])
    sample = set(warmup_indices(trie, warmup_fraction, seed).tolist())
    return [
        PlanRequest(
            r.request_id,
            r.prompt_token_ids,
            r.max_tokens,
            int(output_lens[i]) if i in sample else None,
        )
        for i, r in enumerate(requests)
    ]


def estimate_output_lens(trie: CompactTrie, requests: Sequence[PlanRequest]) -> np.ndarray:
    """Estimated output tokens per request index (float64), see the module invariant."""
    n = len(requests)
    max_tokens = np.fromiter((r.max_tokens for r in requests), dtype=np.float64, count=n)
    known = np.fromiter(
        (-1.0 if r.output_len is None else r.output_len for r in requests),
        dtype=np.float64,
        count=n,
    )
    is_known = known >= 0
    if not is_known.any():
        return max_tokens
    leaves = np.flatnonzero(trie.leaf_request >= 0)
    req = trie.leaf_request[leaves]
    total = np.zeros(trie.num_nodes)
    count = np.zeros(trie.num_nodes)
    total[leaves] = np.where(is_known[req], known[req], 0.0)
    count[leaves] = is_known[req]
    levels = level_order(trie.parent)
    total = subtree_sums(trie.parent, levels, total)
    count = subtree_sums(trie.parent, levels, count)
    mean = np.full(trie.num_nodes, np.nan)
    has = count > 0
    mean[has] = total[has] / count[has]
    for nodes in levels[1:]:  # top-down: borrow the nearest ancestor's mean
        missing = nodes[~has[nodes]]
        mean[missing] = mean[trie.parent[missing]]
    estimate = mean[leaves]
    estimate = np.where(np.isnan(estimate), max_tokens[req], estimate)
    out = np.empty(n)
    out[req] = np.where(is_known[req], known[req], estimate)
    return out
