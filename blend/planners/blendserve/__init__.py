"""BlendServe (docs/papers.md): a resource-aware prefix tree ordered for a dual scanner.

Modules: density (per-subtree Comp/Mem/rho and the layer-wise sort), split (conditional node
split), scan (memory split and a static merge of the two scanners), planner
(BlendServePlanner, NaiveBlendPlanner). The online dual scan lives in blend/admission.
"""

from blend.planners.blendserve.planner import BlendServePlanner, NaiveBlendPlanner
from blend.planners.blendserve.scan import split_memory

__all__ = ["BlendServePlanner", "NaiveBlendPlanner", "split_memory"]
