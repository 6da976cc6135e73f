"""The BlendServe planner and the naive-blend baseline (papers.md s.1).

Invariant: a plan is the warm-up sample (side "W", run first to learn output lengths), then
the dual scan of the layer-wise sorted, conditionally split resource-aware prefix tree: each
request appears once; left ("L") requests are the dense end, right ("R") the sparse end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from blend.cost import CostModel
from blend.planners.base import Plan, PlannerName, PlanRequest, fixed_size_batches
from blend.planners.blendserve.density import ResourceTree, request_comp_s, request_mem_s
from blend.planners.blendserve.estimates import (
    estimate_output_lens,
    group_members,
    prefix_groups,
    warmup_indices,
)
from blend.planners.blendserve.scan import dual_scan
from blend.planners.blendserve.split import conditional_split
from blend.tree import build_compact_trie


def _length_source(requests: Sequence[PlanRequest]) -> str:
    known = sum(r.output_len is not None for r in requests)
    if known == len(requests) and known:
        return "oracle"
    return "revealed" if known else "max_tokens"


@dataclass(frozen=True, slots=True)
class _Prepared:
    tree: ResourceTree
    warmup: np.ndarray  # request indices run first
    params: dict[str, Any]


def _prepare(
    requests: Sequence[PlanRequest], cost: CostModel, warmup_fraction: float, seed: int
) -> _Prepared:
    trie = build_compact_trie([r.prompt_token_ids for r in requests])
    tree = ResourceTree.build(trie, estimate_output_lens(trie, requests), cost)
    warmup = warmup_indices(trie, warmup_fraction, seed)
    params: dict[str, Any] = {
        "model_spec": cost.model.name,
        "hardware": cost.hardware.name,
        "seed": seed,
        "warmup_fraction": warmup_fraction,
        "n_warmup": len(warmup),
        "length_source": _length_source(requests),
        "rho_rt": float(tree.rho[0]),
        "dfs_sharing_ratio": tree.sharing_ratio(),
    }
    return _Prepared(tree, warmup, params)


def _shared_tokens(tree: ResourceTree, sorted_leaves: np.ndarray) -> np.ndarray:
    """Per request: prompt tokens it shares with the leaf before it in the sorted order."""
    requests = tree.trie.leaf_request[sorted_leaves]
    shared = np.zeros(len(tree.trie.lengths))
    shared[requests] = tree.trie.lengths[requests] - tree.first_visit_tokens()[sorted_leaves]
    return shared


def _without(sequence: np.ndarray, removed: np.ndarray, n: int) -> np.ndarray:
    drop = np.zeros(n, dtype=bool)
    drop[removed] = True
    return sequence[~drop[sequence]]


@dataclass(frozen=True, slots=True)
class BlendServePlanner:
    cost: CostModel
    batch_size: int = 256
    seed: int = 0
    warmup_fraction: float = 0.01
    keep_sharing: float = 0.99  # conditional split keeps at least this share of the sharing
    outlier_ratio: float = 4.0  # split leaves this many times off their leaf siblings' median
    scan_window: int = 256  # positions ahead of a scanner that give its density
    name: PlannerName = PlannerName.BLENDSERVE

    def plan(self, requests: Sequence[PlanRequest]) -> Plan:
        n = len(requests)
        prep = _prepare(requests, self.cost, self.warmup_fraction, self.seed)
        tree = prep.tree
        report = conditional_split(
            tree, keep_sharing=self.keep_sharing, outlier_ratio=self.outlier_ratio
        )
        leaves = tree.sorted_leaves()
        shared_by_request = _shared_tokens(tree, leaves)
        sequence = _without(tree.trie.leaf_request[leaves], prep.warmup, n)
        p = tree.prompt_len[sequence]
        d = tree.output_len[sequence]
        scan = dual_scan(
            request_comp_s(self.cost, p, d),
            request_mem_s(self.cost, p, d),
            p,
            d,
            shared_by_request[sequence],
            float(self.cost.kv_capacity_tokens),
            window=self.scan_window,
        )
        order = prep.warmup.tolist() + sequence[scan.positions].tolist()
        sides: list[str | None] = ["W"] * len(prep.warmup)
        sides += scan.sides
        params = {
            **prep.params,
            "batch_size": self.batch_size,
            "keep_sharing": self.keep_sharing,
            "outlier_ratio": self.outlier_ratio,
            "kv_capacity_tokens": self.cost.kv_capacity_tokens,
            "n_split": report.num_split,
            "split_lost_tokens": report.lost_shared_tokens,
            "split_budget_tokens": report.budget_tokens,
            "split_rounds": report.rounds,
            "rho_rt_scanned": scan.rho_root,
            **scan.first_left.as_params("L"),
            **scan.first_right.as_params("R"),
            "n_resplits": scan.num_resplits,
            # the per-step token budget the blend assumes; the executor and the simulator
            # run the engine with it unless the user sets one
            "max_num_batched_tokens": scan.engine_tokens_per_step(),
            "n_left": scan.meet,
            "n_right": len(sequence) - scan.meet,
        }
        return Plan(self.name, order, fixed_size_batches(n, self.batch_size), sides, params)


@dataclass(frozen=True, slots=True)
class NaiveBlendPlanner:
    """Prefix groups (subtrees below the root's shared chain) sorted by density, taken
    alternately from the dense and the sparse end, each group in DFS order."""

    cost: CostModel
    batch_size: int = 256
    seed: int = 0
    warmup_fraction: float = 0.01
    name: PlannerName = PlannerName.NAIVE_BLEND

    def plan(self, requests: Sequence[PlanRequest]) -> Plan:
        n = len(requests)
        prep = _prepare(requests, self.cost, self.warmup_fraction, self.seed)
        tree = prep.tree
        groups = prefix_groups(tree.trie)
        ranked = groups[np.lexsort((tree.trie.first_rank[groups], -tree.rho[groups]))]
        order = prep.warmup.tolist()
        sides: list[str | None] = ["W"] * len(order)
        lo, hi = 0, len(ranked) - 1
        take_left = True
        while lo <= hi:
            group = ranked[lo] if take_left else ranked[hi]
            members = group_members(tree.trie, tree.num_leaves, int(group))
            members = _without(members, prep.warmup, n).tolist()
            order += members
            sides += ["L" if take_left else "R"] * len(members)
            lo, hi = (lo + 1, hi) if take_left else (lo, hi - 1)
            take_left = not take_left
        params = {**prep.params, "batch_size": self.batch_size, "n_groups": len(groups)}
        return Plan(self.name, order, fixed_size_batches(n, self.batch_size), sides, params)
