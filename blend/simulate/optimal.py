"""T_opt, the physical lower bound of the makespan (docs/papers.md, BlendServe).

    T_opt = max((1 - s) * sum_r Comp(p_r, d_r - 1), sum_r Mem(p_r, d_r))
s is the prefix-sharing ratio of the prompt trie (what depth-first order reaches).

Why the simulated makespan is never below T_opt (the step model in step_time.py uses the same
F_eff and W_eff as Comp and Mem):
- Every step costs overhead + max(compute_s, memory_s) (or their sum, on hardware that does
  not overlap them) >= each of compute_s and memory_s, so
  the makespan is at least the sum of either over all steps.
- Compute: a request's prompt token at position i can be skipped only if a block holding the
  same prefix was computed earlier (chained hashes), so the prompt tokens computed number at
  least the distinct prefixes = (1 - s) * sum p. Decodes are never shared: an engine feeds
  d - 1 output tokens back (the last sampled token is never fed), so the tokens computed are at
  least (1 - s) sum p + sum (d - 1) >= (1 - s) * sum (p + d - 1). That is why Comp is taken at
  d - 1 here: the paper's Comp(p, d) counts one token per request that no engine computes.
- Memory: a request's decode k (k = 1 .. d-1) reads p + k KV entries and writes 1; its last
  prefill chunk reads the p prompt entries and writes >= 1. In total >= p + 1 + (d-1) p +
  d(d-1)/2 + (d-1) = p d + d^2/2 + d/2 >= p d + d^2/2, which is Mem(p, d) in tokens.
Preemption and recomputation only add work, so the bound holds for every order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from blend.cost.model import CostModel
from blend.planners.tree import RadixTree
from blend.simulate.types import SimRequest


def dfs_sharing_ratio(requests: Sequence[SimRequest]) -> float:
    """Prefix-sharing ratio s of the prompts' radix tree (reached by depth-first order)."""
    return RadixTree.build(
        [tuple(int(t) for t in r.prompt_token_ids) for r in requests]
    ).sharing_ratio()


def optimal_makespan_s(
    requests: Sequence[SimRequest],
    cost: CostModel,
    sharing_ratio: float | None = None,
    *,
    peak: bool = False,
) -> float:
    """T_opt in seconds; `sharing_ratio` saves rebuilding the tree when it is known.

    peak=True takes the datasheet's peak FLOP/s and bandwidth (BlendServe's bound) instead of
    the effective rates the simulator's steps run at (a tighter bound, always the larger).
    """
    s = dfs_sharing_ratio(requests) if sharing_ratio is None else sharing_ratio
    if peak:
        hw = replace(cost.hardware, flops_efficiency=1.0, bandwidth_efficiency=1.0)
        cost = replace(cost, hardware=hw)
    comp = sum(cost.comp_s(len(r.prompt_token_ids), r.output_len - 1) for r in requests)
    mem = sum(cost.mem_s(len(r.prompt_token_ids), r.output_len) for r in requests)
    return max((1.0 - s) * comp, mem)


def optimal_from_lengths(
    p: np.ndarray, d: np.ndarray, cost: CostModel, sharing_ratio: float
) -> float:
    """T_opt (effective rates) of requests given as prompt and output lengths (tokens)."""
    comp = float(np.sum(cost.comp_s(p, d - 1.0)))
    mem = float(np.sum(cost.mem_s(p, d)))
    return max((1.0 - sharing_ratio) * comp, mem)
