"""Fleet policies: how many engines run mixed, which class a free prefill slot takes, and
where a finished prefill decodes. Built from a fluid-LP solution (fluid_lp.LpSolution)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from blend.control.fluid_lp import LpSolution, LpVariant


class FleetPolicyKind(StrEnum):
    GATE_AND_ROUTE = "gate-and-route"  # x* gate, solo-first router (bundled LP)
    PRIORITIZE_AND_ROUTE = "prioritize-and-route"  # argmax D/P gate, solo-first (per-phase LP)
    SLI_AWARE = "sli-aware"  # x* gate, router split by y* (SLI-aware LP)
    FCFS = "fcfs"  # Sarathi-style: every engine mixed, FCFS, decodes stay where prefilled


class Gate(StrEnum):
    TARGET = "target"  # smallest (X_i - n x*_i) / x*_i; ties: largest Q_p,i - n q*_p,i
    PRIORITY = "priority"  # largest D_i / P_i first
    FCFS = "fcfs"  # the oldest waiting request


class Router(StrEnum):
    SOLO_FIRST = "solo-first"  # random solo engine with a free slot, else mixed, else buffer
    SPLIT = "split"  # solo pool with probability p_i, else the mixed pool; full: that pool's buffer
    LOCAL = "local"  # the engine that prefilled it


@dataclass(frozen=True, slots=True)
class FleetPolicy:
    """A policy for n engines; per-class arrays are in the order of the LP's classes."""

    kind: FleetPolicyKind
    engines: int  # n
    mixed_engines: int  # M: engines with a prefill slot (the rest decode only)
    gate: Gate
    router: Router
    gate_target: np.ndarray  # n x*_i: prefills in service the target gate aims at
    queue_target: np.ndarray  # n q*_p,i: waiting requests (the target gate's tie-break)
    priority: np.ndarray  # the priority gate's key (D_i / P_i)
    solo_probability: np.ndarray  # the split router's chance of the solo pool, per class
    hold_while_buffered: bool = False  # no prefill starts while a decode waits in a buffer

    def __post_init__(self) -> None:
        if self.engines < 1 or not 0 <= self.mixed_engines <= self.engines:
            raise ValueError(
                f"FleetPolicy: need 0 <= mixed_engines <= engines and engines >= 1, got "
                f"mixed_engines={self.mixed_engines}, engines={self.engines}"
            )
        if self.mixed_engines == 0:
            raise ValueError(f"FleetPolicy {self.kind}: no mixed engine, nothing can prefill")


def _mixed_engines(solution: LpSolution, engines: int) -> int:
    """M = ceil(n sum x*), at least 1 (and at most n); rounding noise is not a whole engine."""
    share = engines * solution.mixed_fraction
    return min(engines, max(1, math.ceil(share - 1e-9)))


def _priority(solution: LpSolution) -> np.ndarray:
    return np.array([c.output_tokens / c.prompt_tokens for c in solution.classes])


def _check_variant(solution: LpSolution, expected: LpVariant, policy: str) -> None:
    if solution.variant is not expected:
        raise ValueError(f"{policy} needs the {expected} LP's solution, got {solution.variant}")
    if solution.saturated:
        raise ValueError(f"{policy} needs an LP with arrivals, got a saturated (offline) one")


def gate_and_route(
    solution: LpSolution, engines: int, *, hold_while_buffered: bool = False
) -> FleetPolicy:
    """The paper's Gate-and-Route from the bundled LP.

    hold_while_buffered (not in the paper): the gate admits nothing while a decode waits in
    the buffer, so prefill work is not spent on requests that would abandon there.
    """
    _check_variant(solution, LpVariant.BUNDLED, "Gate-and-Route")
    policy = _target_policy(FleetPolicyKind.GATE_AND_ROUTE, solution, engines, Router.SOLO_FIRST)
    return replace(policy, hold_while_buffered=hold_while_buffered)


def sli_aware_routing(solution: LpSolution, engines: int) -> FleetPolicy:
    """The x* gate of the SLI-aware LP, decodes split between the pools as its y* does."""
    _check_variant(solution, LpVariant.SLI_AWARE, "SLI-aware routing")
    return _target_policy(FleetPolicyKind.SLI_AWARE, solution, engines, Router.SPLIT)


def prioritize_and_route(solution: LpSolution, engines: int) -> FleetPolicy:
    """Per-phase pricing: M from the per-phase LP, the gate admits the largest D/P first."""
    _check_variant(solution, LpVariant.PER_PHASE, "Prioritize-and-Route")
    k = len(solution.classes)
    return FleetPolicy(
        kind=FleetPolicyKind.PRIORITIZE_AND_ROUTE,
        engines=engines,
        mixed_engines=_mixed_engines(solution, engines),
        gate=Gate.PRIORITY,
        router=Router.SOLO_FIRST,
        gate_target=engines * solution.x,
        queue_target=np.zeros(k),
        priority=_priority(solution),
        solo_probability=np.zeros(k),
    )


def fcfs(solution: LpSolution, engines: int) -> FleetPolicy:
    """Sarathi-style baseline: every engine mixed; the LP solution only names the classes."""
    k = len(solution.classes)
    return FleetPolicy(
        kind=FleetPolicyKind.FCFS,
        engines=engines,
        mixed_engines=engines,
        gate=Gate.FCFS,
        router=Router.LOCAL,
        gate_target=np.zeros(k),
        queue_target=np.zeros(k),
        priority=np.zeros(k),
        solo_probability=np.zeros(k),
    )


def _target_policy(
    kind: FleetPolicyKind, solution: LpSolution, engines: int, router: Router
) -> FleetPolicy:
    return FleetPolicy(
        kind=kind,
        engines=engines,
        mixed_engines=_mixed_engines(solution, engines),
        gate=Gate.TARGET,
        router=router,
        gate_target=engines * solution.x,
        queue_target=engines * solution.q_prefill,
        priority=_priority(solution),
        solo_probability=solution.solo_route_probability,
    )
