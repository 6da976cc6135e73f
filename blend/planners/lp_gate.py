"""The `lp-gate` planner: prefix-tree depth-first order, fed by the LP prefill gate.

The order only fixes each request class's internal order (DFS: prefix sharing within a class
is kept); which class enters the engine next is decided while it runs by the fluid LP's
prefill shares (blend/admission/lp_gate.py), from the requests' estimated output lengths, so
the plan is made again once the warm-up has measured lengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from blend.planners.base import AdmissionKind, Plan, PlannerName, fixed_size_batches, no_sides
from blend.planners.estimates import OutputEstimates
from blend.planners.prompt_tokens import prompts_of
from blend.planners.request import PlanRequest
from blend.planners.tree import lexicographic_order


@dataclass(frozen=True, slots=True)
class LpGatePlanner:
    batch_size: int = 256
    name: PlannerName = PlannerName.LP_GATE
    uses_lengths: bool = True  # the gate's classes come from the estimates
    admission: AdmissionKind = AdmissionKind.LP_GATE

    def plan(
        self, requests: Sequence[PlanRequest], estimates: OutputEstimates | None = None
    ) -> Plan:
        order = lexicographic_order(prompts_of(requests))
        return Plan(
            planner=self.name,
            order=order,
            batches=fixed_size_batches(len(order), self.batch_size),
            sides=no_sides(len(order)),
            params={"batch_size": self.batch_size},
            admission=self.admission,
        )
