"""Many engines in the fluid model's slot model: policies from the fluid LP, simulated."""

from blend.control.fleet.policies import (
    FleetPolicy,
    FleetPolicyKind,
    Gate,
    Router,
    fcfs,
    gate_and_route,
    prioritize_and_route,
    sli_aware_routing,
)
from blend.control.fleet.result import ClassOutcome, FleetResult, FleetTrace
from blend.control.fleet.simulate import FleetConfig, simulate_fleet

__all__ = [
    "ClassOutcome",
    "FleetConfig",
    "FleetPolicy",
    "FleetPolicyKind",
    "FleetResult",
    "FleetTrace",
    "Gate",
    "Router",
    "fcfs",
    "gate_and_route",
    "prioritize_and_route",
    "simulate_fleet",
    "sli_aware_routing",
]
