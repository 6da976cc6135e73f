"""The BlendServe planner and the naive-blend baseline (docs/papers.md, BlendServe).

Invariant: BlendServe's plan is the leaf sequence of the resource-aware prefix tree after the
conditional node split and the layer-wise sort (densest first; every request once). By
default the executor and the simulator feed it with the online dual scan
(blend/admission/dual_scan.py), whose two scanners walk this sequence from both ends while the
engine runs; `online=False` instead merges the two scanners statically on a virtual clock
(scan.py) into one order for in-order feeding (an ablation of the online admission).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from blend.cost.model import CostModel
from blend.planners.base import AdmissionKind, Plan, PlannerName, ScanSide, fixed_size_batches
from blend.planners.blendserve.density import ResourceTree
from blend.planners.blendserve.scan import DualScan, dual_scan
from blend.planners.blendserve.split import conditional_split
from blend.planners.estimates import (
    OutputEstimates,
    estimate_outputs,
    group_members,
    prefix_groups,
)
from blend.planners.prompt_tokens import prompts_of
from blend.planners.request import PlanRequest
from blend.planners.tree import build_compact_trie


def resource_tree(
    requests: Sequence[PlanRequest], estimates: OutputEstimates | None, cost: CostModel
) -> tuple[ResourceTree, OutputEstimates]:
    """The requests' prompt trie annotated with costs at the estimated output lengths."""
    estimates = estimates if estimates is not None else estimate_outputs(requests)
    if len(estimates) != len(requests):
        raise ValueError(f"{len(estimates)} estimates for {len(requests)} requests")
    trie = build_compact_trie(prompts_of(requests))
    return ResourceTree.build(trie, estimates.tokens, cost), estimates


def _common_params(
    tree: ResourceTree, estimates: OutputEstimates, cost: CostModel
) -> dict[str, Any]:
    return {
        "model_spec": cost.model.name,
        "hardware": cost.hardware.name,
        "estimate_sources": estimates.source_counts(),
        "rho_rt": float(tree.rho[0]),
        "dfs_sharing_ratio": tree.sharing_ratio(),
        "kv_capacity_tokens": cost.kv_capacity_tokens,
    }


def shared_with_previous(tree: ResourceTree, sorted_leaves: np.ndarray) -> np.ndarray:
    """Per position of the sorted sequence: prompt tokens it shares with the position before."""
    requests = tree.trie.leaf_request[sorted_leaves]
    return tree.trie.lengths[requests] - tree.first_visit_tokens()[sorted_leaves]


@dataclass(frozen=True, slots=True)
class BlendServePlanner:
    cost: CostModel
    batch_size: int = 256
    keep_sharing: float = 0.99  # conditional split keeps at least this share of the sharing
    outlier_ratio: float = 4.0  # split leaves this many times off their leaf siblings' median
    scan_window: int = 256  # positions ahead of a scanner that give its density
    online: bool = True  # feed by the online dual scan (else a static merged order)
    name: PlannerName = PlannerName.BLENDSERVE
    uses_lengths: bool = True

    @property
    def admission(self) -> AdmissionKind:
        return AdmissionKind.DUAL_SCAN if self.online else AdmissionKind.IN_ORDER

    def plan(
        self, requests: Sequence[PlanRequest], estimates: OutputEstimates | None = None
    ) -> Plan:
        n = len(requests)
        tree, estimates = resource_tree(requests, estimates, self.cost)
        report = conditional_split(
            tree, keep_sharing=self.keep_sharing, outlier_ratio=self.outlier_ratio
        )
        leaves = tree.sorted_leaves()
        sequence = tree.trie.leaf_request[leaves]
        scan = self._static_scan(tree, sequence, shared_with_previous(tree, leaves))
        params: dict[str, Any] = {
            **_common_params(tree, estimates, self.cost),
            "batch_size": self.batch_size,
            "keep_sharing": self.keep_sharing,
            "outlier_ratio": self.outlier_ratio,
            "n_split": report.num_split,
            "split_lost_tokens": report.lost_shared_tokens,
            "split_budget_tokens": report.budget_tokens,
            "split_rounds": report.rounds,
            "rho_rt_scanned": scan.rho_root,
            **scan.first_left.as_params("L"),
            **scan.first_right.as_params("R"),
            "n_left": scan.meet,
            "n_right": n - scan.meet,
        }
        sides: list[ScanSide | None]
        if self.online:  # the sequence itself; the scanners run while the engine runs
            order, sides = sequence.tolist(), [None] * n
        else:
            order, sides = sequence[scan.positions].tolist(), list(scan.sides)
        return Plan(
            self.name,
            np.asarray(order, dtype=np.int64),
            fixed_size_batches(n, self.batch_size),
            np.array(sides, dtype=object),
            params,
            admission=self.admission,
        )

    def _static_scan(
        self, tree: ResourceTree, sequence: np.ndarray, shared: np.ndarray
    ) -> DualScan:
        p = tree.prompt_len[sequence]
        d = tree.output_len[sequence]
        return dual_scan(
            self.cost.comp_s(p, d),
            self.cost.mem_s(p, d),
            p,
            d,
            shared.astype(np.float64),
            float(self.cost.kv_capacity_tokens),
            window=self.scan_window,
        )


@dataclass(frozen=True, slots=True)
class NaiveBlendPlanner:
    """Prefix groups (subtrees below the root's shared chain) sorted by density, taken
    alternately from the dense and the sparse end, each group in DFS order."""

    cost: CostModel
    batch_size: int = 256
    name: PlannerName = PlannerName.NAIVE_BLEND
    uses_lengths: bool = True
    admission: AdmissionKind = AdmissionKind.IN_ORDER

    def plan(
        self, requests: Sequence[PlanRequest], estimates: OutputEstimates | None = None
    ) -> Plan:
        n = len(requests)
        tree, estimates = resource_tree(requests, estimates, self.cost)
        groups = prefix_groups(tree.trie)
        ranked = groups[np.lexsort((tree.trie.first_rank[groups], -tree.rho[groups]))]
        order: list[int] = []
        sides: list[ScanSide | None] = []
        lo, hi = 0, len(ranked) - 1
        take_left = True
        while lo <= hi:
            group = ranked[lo] if take_left else ranked[hi]
            members = group_members(tree.trie, tree.num_leaves, int(group)).tolist()
            order += members
            sides += [ScanSide.LEFT if take_left else ScanSide.RIGHT] * len(members)
            lo, hi = (lo + 1, hi) if take_left else (lo, hi - 1)
            take_left = not take_left
        params = {
            **_common_params(tree, estimates, self.cost),
            "batch_size": self.batch_size,
            "n_groups": len(groups),
        }
        return Plan(
            self.name,
            np.asarray(order, dtype=np.int64),
            fixed_size_batches(n, self.batch_size),
            np.array(sides, dtype=object),
            params,
        )
