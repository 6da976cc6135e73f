"""BatchLLM's order (arXiv 2412.03594): prefix groups kept together, the groups with the
largest decode share first, so their long decodes overlap the prefill chunks that follow.

Invariant: every top-level prefix group (estimates.prefix_groups) is one contiguous run of
the order, in depth-first order inside (all its sharing kept); groups are sorted by
R = estimated output tokens / prompt tokens to compute (the shared prefix counted once),
descending; ties keep token order. Its memory-centric batching (running requests bounded by
KV memory rather than a fixed max_num_seqs) is an engine setting, searched like every other
(blend/engines/settings.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from blend.planners.arrays import level_order, subtree_sums
from blend.planners.base import AdmissionKind, Plan, PlannerName, fixed_size_batches, no_sides
from blend.planners.estimates import (
    OutputEstimates,
    estimate_outputs,
    group_members,
    prefix_groups,
)
from blend.planners.prompt_tokens import prompts_of
from blend.planners.request import PlanRequest
from blend.planners.tree import build_compact_trie


@dataclass(frozen=True, slots=True)
class BatchLlmPlanner:
    batch_size: int = 256
    name: PlannerName = PlannerName.BATCHLLM
    uses_lengths: bool = True
    admission: AdmissionKind = AdmissionKind.IN_ORDER

    def plan(
        self, requests: Sequence[PlanRequest], estimates: OutputEstimates | None = None
    ) -> Plan:
        n = len(requests)
        estimates = estimates if estimates is not None else estimate_outputs(requests)
        trie = build_compact_trie(prompts_of(requests))
        levels = level_order(trie.parent)
        leaves = np.flatnonzero(trie.leaf_request >= 0)
        per_leaf = np.zeros(trie.num_nodes)
        per_leaf[leaves] = estimates.tokens[trie.leaf_request[leaves]]
        decode = subtree_sums(trie.parent, levels, per_leaf)
        prefill = subtree_sums(trie.parent, levels, trie.edge_len.astype(np.float64))
        num_leaves = subtree_sums(trie.parent, levels, (trie.leaf_request >= 0).astype(float))
        groups = prefix_groups(trie)
        ratio = decode[groups] / np.maximum(prefill[groups], 1.0)
        ranked = groups[np.lexsort((trie.first_rank[groups], -ratio))]
        order = np.concatenate(
            [group_members(trie, num_leaves, int(g)) for g in ranked]
            or [np.zeros(0, dtype=np.int64)]
        )
        params = {
            "batch_size": self.batch_size,
            "n_groups": len(groups),
            "estimate_sources": estimates.source_counts(),
            "decode_share_first": float(ratio.max(initial=0.0)),
            "decode_share_last": float(ratio.min(initial=0.0)),
        }
        return Plan(self.name, order, fixed_size_batches(n, self.batch_size), no_sides(n), params)
