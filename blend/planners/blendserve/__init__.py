"""BlendServe (papers.md s.1): a resource-aware prefix tree ordered for a dual scanner.

Modules: arrays (vectorised tree passes), estimates (warm-up output lengths), density
(per-subtree Comp/Mem/rho and the layer-wise sort), split (conditional node split), scan
(memory split and the two scanners), planner (BlendServePlanner, NaiveBlendPlanner).
"""

from blend.planners.blendserve.estimates import reveal_warmup, warmup_indices
from blend.planners.blendserve.planner import BlendServePlanner, NaiveBlendPlanner
from blend.planners.blendserve.scan import split_memory

__all__ = [
    "BlendServePlanner",
    "NaiveBlendPlanner",
    "reveal_warmup",
    "split_memory",
    "warmup_indices",
]
