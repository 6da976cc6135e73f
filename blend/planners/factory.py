"""make_planner: a planner by name (PlannerName), the one place that knows every planner."""

from __future__ import annotations

from blend.cost.model import CostModel, load_hardware, load_model_spec
from blend.planners.base import Planner, PlannerName

DEFAULT_MODEL_SPEC = "llama-3.1-8b"
DEFAULT_HARDWARE = "a100-80g"


def planner_name(name: str | PlannerName) -> PlannerName:
    """`name` as a PlannerName; a ValueError naming the known planners otherwise."""
    try:
        return PlannerName(name)
    except ValueError:
        known = ", ".join(p.value for p in PlannerName)
        raise ValueError(f"Unknown planner: {name!r} (known: {known})") from None


def make_planner(
    name: str | PlannerName,
    *,
    seed: int = 0,
    batch_size: int = 256,
    model_spec: str | None = None,
    hardware: str | None = None,
    cost: CostModel | None = None,
) -> Planner:
    """The planner called `name`; `seed` feeds randomised planners.

    Resource-aware planners cost requests with `model_spec` on `hardware` (names from
    blend/specs or JSON paths; defaults llama-3.1-8b on a100-80g); a ready `cost` model takes
    precedence over the names.
    """
    from blend.planners.batchllm import BatchLlmPlanner
    from blend.planners.blendserve import BlendServePlanner, NaiveBlendPlanner
    from blend.planners.simple import DfsPlanner, FcfsPlanner, LptPlanner, RandomPlanner

    chosen = planner_name(name)
    if chosen is PlannerName.FCFS:
        return FcfsPlanner(batch_size=batch_size)
    if chosen is PlannerName.RANDOM:
        return RandomPlanner(batch_size=batch_size, seed=seed)
    if chosen is PlannerName.DFS:
        return DfsPlanner(batch_size=batch_size)
    if chosen is PlannerName.LPT:
        return LptPlanner(batch_size=batch_size)
    if chosen is PlannerName.BATCHLLM:
        return BatchLlmPlanner(batch_size=batch_size)
    if chosen is PlannerName.LP_GATE:
        from blend.planners.lp_gate import LpGatePlanner

        return LpGatePlanner(batch_size=batch_size)
    cost = cost or CostModel(
        load_model_spec(model_spec or DEFAULT_MODEL_SPEC),
        load_hardware(hardware or DEFAULT_HARDWARE),
    )
    if chosen is PlannerName.NAIVE_BLEND:
        return NaiveBlendPlanner(cost=cost, batch_size=batch_size)
    if chosen is PlannerName.BLENDSERVE:
        return BlendServePlanner(cost=cost, batch_size=batch_size)
    raise ValueError(f"Unknown planner: {name!r}")
