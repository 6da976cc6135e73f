"""Planners decide the order in which the engine sees requests; see base.make_planner."""

from blend.planners.base import (
    Plan,
    Planner,
    PlannerName,
    PlanRequest,
    StepBudgets,
    make_planner,
)

__all__ = ["Plan", "PlanRequest", "Planner", "PlannerName", "StepBudgets", "make_planner"]
