"""The resource-aware prefix tree: per-subtree Comp, Mem, sharing and density.

Invariant: for every node v, with U_v the prompt tokens on the edges inside v's subtree
(v's own edge included; each shared token counted once), P_v the prompt tokens and Comp_v,
Mem_v the summed per-request costs (cost/model.py) of the requests below v,
    s_v = 1 - U_v / P_v,    rho(v) = (1 - s_v) * Comp_v / Mem_v      (docs/papers.md, BlendServe).
So a leaf's density is its marginal density given its cached prefix, and rho(root) is the
workload density behind T_opt = max((1 - s) sum Comp, sum Mem).
Layer-wise sort: siblings are visited by rho descending; only siblings move, so each subtree
stays contiguous in the leaf sequence and DFS-level sharing is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blend.cost.model import CostModel
from blend.planners.arrays import level_order, preorder_positions, subtree_sums
from blend.planners.tree import CompactTrie

RHO_CAP = 1e12  # density of requests with no KV reads (no output): sorts them leftmost


def density(comp_s: np.ndarray, mem_s: np.ndarray, sharing: np.ndarray) -> np.ndarray:
    """(1 - s) Comp / Mem, RHO_CAP where Mem is 0."""
    safe = np.where(mem_s > 0, mem_s, 1.0)
    return np.where(mem_s > 0, (1.0 - sharing) * comp_s / safe, RHO_CAP)


@dataclass(slots=True)
class ResourceTree:
    """A compact trie annotated with costs; `parent` and `edge_len` change when leaves split.

    Arrays are per node unless named per request.
    """

    trie: CompactTrie
    parent: np.ndarray  # int64, a copy of trie.parent (splits re-attach leaves to node 0)
    edge_len: np.ndarray  # float64 prompt tokens on the node's edge
    prompt_len: np.ndarray  # float64 per request
    output_len: np.ndarray  # float64 estimated output tokens per request
    cost: CostModel
    levels: list[np.ndarray]
    comp_s: np.ndarray  # subtree sum of Comp (s)
    mem_s: np.ndarray  # subtree sum of Mem (s)
    num_leaves: np.ndarray  # requests in the subtree
    unique_tokens: np.ndarray  # U_v
    prompt_tokens: np.ndarray  # P_v
    rho: np.ndarray
    _positions: np.ndarray  # preorder positions of the last sorted_leaves() walk

    @classmethod
    def build(cls, trie: CompactTrie, output_len: np.ndarray, cost: CostModel) -> ResourceTree:
        empty = np.zeros(0)
        tree = cls(
            trie=trie,
            parent=trie.parent.copy(),
            edge_len=trie.edge_len.astype(np.float64),
            prompt_len=trie.lengths.astype(np.float64),
            output_len=np.asarray(output_len, dtype=np.float64),
            cost=cost,
            levels=[],
            comp_s=empty,
            mem_s=empty,
            num_leaves=empty,
            unique_tokens=empty,
            prompt_tokens=empty,
            rho=empty,
            _positions=empty,
        )
        tree.annotate()
        return tree

    @property
    def leaves(self) -> np.ndarray:
        return np.flatnonzero(self.trie.leaf_request >= 0)

    def annotate(self) -> None:
        """Recompute every subtree sum and density (mutates the tree's annotations)."""
        n = len(self.parent)
        self.levels = level_order(self.parent)
        leaves = self.leaves
        req = self.trie.leaf_request[leaves]
        p, d = self.prompt_len[req], self.output_len[req]

        def leaf_sums(values: np.ndarray) -> np.ndarray:
            per_node = np.zeros(n)
            per_node[leaves] = values
            return subtree_sums(self.parent, self.levels, per_node)

        self.comp_s = leaf_sums(self.cost.comp_s(p, d))
        self.mem_s = leaf_sums(self.cost.mem_s(p, d))
        self.num_leaves = leaf_sums(np.ones(len(leaves)))
        self.prompt_tokens = leaf_sums(p)
        alive_edges = np.where(self.num_leaves > 0, self.edge_len, 0.0)  # detached-from nodes
        self.unique_tokens = subtree_sums(self.parent, self.levels, alive_edges)
        sharing = np.zeros(n)
        has_prompt = self.prompt_tokens > 0
        sharing[has_prompt] = 1.0 - self.unique_tokens[has_prompt] / self.prompt_tokens[has_prompt]
        self.rho = density(self.comp_s, self.mem_s, sharing)

    def sharing_ratio(self) -> float:
        """Prefix sharing of the (possibly split) tree: 1 - U_root / P_root."""
        total = self.prompt_tokens[0]
        return 0.0 if total == 0 else float(1.0 - self.unique_tokens[0] / total)

    def sorted_leaves(self) -> np.ndarray:
        """Leaf node ids in layer-wise sorted order: DFS with children by rho descending.

        Ties keep token order (first_rank), so equal densities give the plain DFS order.
        """
        rank = np.lexsort((self.trie.first_rank, -self.rho))
        sibling_rank = np.empty(len(rank), dtype=np.int64)
        sibling_rank[rank] = np.arange(len(rank))
        self._positions = preorder_positions(self.parent, self.levels, sibling_rank)
        leaves = self.leaves
        return leaves[np.argsort(self._positions[leaves], kind="stable")]

    def first_visit_tokens(self) -> np.ndarray:
        """Per node id: prompt tokens a leaf computes first in the last sorted_leaves() order.

        An edge is computed by the first leaf of its subtree; in depth-first order a leaf's
        prompt minus this is exactly its common prefix with the leaf before it.
        """
        n = len(self.parent)
        pos = self._positions
        first_leaf_pos = np.where(self.trie.leaf_request >= 0, pos, np.inf)
        for nodes in reversed(self.levels[1:]):
            np.minimum.at(first_leaf_pos, self.parent[nodes], first_leaf_pos[nodes])
        node_at = np.zeros(n, dtype=np.int64)
        node_at[pos.astype(np.int64)] = np.arange(n)
        alive = np.isfinite(first_leaf_pos)
        owner = node_at[first_leaf_pos[alive].astype(np.int64)]
        tokens = np.zeros(n)
        np.add.at(tokens, owner, self.edge_len[alive])
        return tokens

    def detach(self, leaves: np.ndarray) -> None:
        """Re-attach `leaves` under the root with their whole prompt as edge (mutates)."""
        req = self.trie.leaf_request[leaves]
        self.parent[leaves] = 0
        self.edge_len[leaves] = self.prompt_len[req]
        self.annotate()
