"""The baseline planners: input order, seeded random order, prefix-tree depth-first order."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from blend.planners.base import Plan, PlannerName, PlanRequest, fixed_size_batches
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

    def plan(self, requests: Sequence[PlanRequest]) -> Plan:
        return _plan(self.name, list(range(len(requests))), self.batch_size)


@dataclass(frozen=True, slots=True)
class RandomPlanner:
    batch_size: int = 256
    seed: int = 0
    name: PlannerName = PlannerName.RANDOM

    def plan(self, requests: Sequence[PlanRequest]) -> Plan:
        order = list(range(len(requests)))
        random.Random(self.seed).shuffle(order)
        return _plan(self.name, order, self.batch_size, seed=self.seed)


@dataclass(frozen=True, slots=True)
class DfsPlanner:
    batch_size: int = 256
    name: PlannerName = PlannerName.DFS

    def plan(self, requests: Sequence[PlanRequest]) -> Plan:
        # depth-first order of the prompt trie = lexicographic order (ties in input order)
        order = lexicographic_order([r.prompt_token_ids for r in requests])
        return _plan(self.name, order.tolist(), self.batch_size)
