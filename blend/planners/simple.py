"""The baseline planners: input order, seeded random order, prefix-tree depth-first order.

None of them reads output-length estimates, so none is re-planned after the warm-up.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from blend.admission.base import AdmissionKind
from blend.planners.base import Plan, PlannerName, fixed_size_batches
from blend.planners.estimates import OutputEstimates
from blend.planners.request import PlanRequest
from blend.tree import lexicographic_order


def _plan(name: PlannerName, order: list[int], batch_size: int, **params: object) -> Plan:
    return Plan(
        planner=name,
        order=order,
        batches=fixed_size_batches(len(order), batch_size),
        sides=[None] * len(order),
        params={"batch_size": batch_size, **params},
    )


@dataclass(frozen=True, slots=True)
class FcfsPlanner:
    batch_size: int = 256
    name: PlannerName = PlannerName.FCFS
    uses_lengths: bool = False
    admission: AdmissionKind = AdmissionKind.IN_ORDER

    def plan(
        self, requests: Sequence[PlanRequest], estimates: OutputEstimates | None = None
    ) -> Plan:
        return _plan(self.name, list(range(len(requests))), self.batch_size)


@dataclass(frozen=True, slots=True)
class RandomPlanner:
    batch_size: int = 256
    seed: int = 0
    name: PlannerName = PlannerName.RANDOM
    uses_lengths: bool = False
    admission: AdmissionKind = AdmissionKind.IN_ORDER

    def plan(
        self, requests: Sequence[PlanRequest], estimates: OutputEstimates | None = None
    ) -> Plan:
        order = list(range(len(requests)))
        random.Random(self.seed).shuffle(order)
        return _plan(self.name, order, self.batch_size, seed=self.seed)


@dataclass(frozen=True, slots=True)
class DfsPlanner:
    batch_size: int = 256
    name: PlannerName = PlannerName.DFS
    uses_lengths: bool = False
    admission: AdmissionKind = AdmissionKind.IN_ORDER

    def plan(
        self, requests: Sequence[PlanRequest], estimates: OutputEstimates | None = None
    ) -> Plan:
        # depth-first order of the prompt trie = lexicographic order (ties in input order)
        order = lexicographic_order([r.prompt_token_ids for r in requests])
        return _plan(self.name, order.tolist(), self.batch_size)
