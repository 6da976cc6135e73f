"""Conditional node split: detach leaf density outliers and re-attach them under the root.

Invariant: the prompt tokens that detached leaves stop sharing (for each, the depth of the
prefix it left) never exceed budget = (1 - keep_sharing) x the tree's shared tokens, so the
split tree keeps >= keep_sharing of the DFS-level sharing.
A leaf is an outlier when its density differs from the median density of the leaves beside
it (same parent) by more than `outlier_ratio`, either way. Each round detaches the strongest
outliers that fit the budget (at most `max_fraction_per_round` of the leaves), re-annotates
and re-sorts; rounds stop when no outlier is left (the leaf sequence is monotone up to the
ratio), none is affordable, or after `max_rounds`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blend.planners.blendserve.density import ResourceTree


@dataclass(frozen=True, slots=True)
class SplitReport:
    num_split: int  # leaves re-attached under the root
    lost_shared_tokens: float  # prompt tokens no longer shared because of the splits
    budget_tokens: float  # the most that could be lost (1 - keep_sharing) x shared tokens
    rounds: int


def outlier_scores(tree: ResourceTree) -> np.ndarray:
    """Per node id: |log rho(leaf) - median log rho of the leaves hanging off the same parent|.

    0 for inner nodes, leaves of the root, leaves without leaf siblings and empty-edge leaves
    (duplicates or prefixes of other prompts: detaching one gains nothing). The median, not
    the parent's density, is the reference: one memory-heavy leaf dominates its parent's Mem.
    """
    leaves = tree.leaves
    scores = np.zeros(len(tree.parent))
    if leaves.size == 0:
        return scores
    up = tree.parent[leaves]
    with np.errstate(divide="ignore"):
        log_rho = np.log(tree.rho[leaves])
    order = np.lexsort((log_rho, up))
    groups, starts, counts = np.unique(up[order], return_index=True, return_counts=True)
    sorted_rho = log_rho[order]
    median = (sorted_rho[starts + (counts - 1) // 2] + sorted_rho[starts + counts // 2]) / 2.0
    group_of = np.searchsorted(groups, up)
    with np.errstate(invalid="ignore"):
        score = np.abs(log_rho - median[group_of])
    eligible = (up > 0) & (counts[group_of] > 1) & (tree.edge_len[leaves] > 0) & np.isfinite(score)
    scores[leaves] = np.where(eligible, score, 0.0)
    return scores


def conditional_split(
    tree: ResourceTree,
    *,
    keep_sharing: float = 0.99,
    outlier_ratio: float = 4.0,
    max_fraction_per_round: float = 0.002,
    max_rounds: int = 8,
) -> SplitReport:
    """Split outlier leaves within the sharing budget (mutates `tree`)."""
    shared = float(tree.prompt_tokens[0] - tree.unique_tokens[0])
    budget = (1.0 - keep_sharing) * shared
    lost, num_split, rounds = 0.0, 0, 0
    threshold = float(np.log(outlier_ratio))
    depth = tree.trie.depth.astype(np.float64)
    while rounds < max_rounds:
        scores = outlier_scores(tree)
        candidates = np.flatnonzero(scores > threshold)
        if candidates.size == 0:
            break
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
        cap = max(1, int(max_fraction_per_round * len(tree.leaves)))
        cost = depth[tree.parent[candidates]]
        affordable = candidates[np.cumsum(cost) <= budget - lost][:cap]
        if affordable.size == 0:
            break
        lost += float(depth[tree.parent[affordable]].sum())
        num_split += int(affordable.size)
        tree.detach(affordable)
        rounds += 1
    return SplitReport(num_split, lost, budget, rounds)
