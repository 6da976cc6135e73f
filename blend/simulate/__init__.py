"""An engine simulator good enough to judge plans without a GPU (see engine.py)."""

from blend.cost.step_time import StepCost, decode_run_cost, step_cost, step_time_s
from blend.simulate.engine import simulate
from blend.simulate.optimal import dfs_sharing_ratio, optimal_makespan_s
from blend.simulate.types import SimConfig, SimRequest, SimResult

__all__ = [
    "SimConfig",
    "SimRequest",
    "SimResult",
    "StepCost",
    "decode_run_cost",
    "dfs_sharing_ratio",
    "optimal_makespan_s",
    "simulate",
    "step_cost",
    "step_time_s",
]
