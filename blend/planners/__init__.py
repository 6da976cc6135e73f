"""Planners decide the order in which the engine sees requests (see factory.make_planner)."""

from blend.planners.base import Plan, Planner, PlannerName
from blend.planners.estimates import (
    EstimateSource,
    LengthHint,
    OutputEstimates,
    estimate_outputs,
    select_warmup,
)
from blend.planners.factory import make_planner, planner_name
from blend.planners.request import PlanRequest

__all__ = [
    "EstimateSource",
    "LengthHint",
    "OutputEstimates",
    "Plan",
    "PlanRequest",
    "Planner",
    "PlannerName",
    "estimate_outputs",
    "make_planner",
    "planner_name",
    "select_warmup",
]
