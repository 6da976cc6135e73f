"""The baseline planners: input order, seeded random order, prefix-tree depth-first order,
and depth-first order with the longest estimated outputs first (lpt).

Only lpt reads output-length estimates, so only it is re-planned after the warm-up.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from blend.planners.base import AdmissionKind, Plan, PlannerName, fixed_size_batches, no_sides
from blend.planners.estimates import OutputEstimates, estimate_outputs
from blend.planners.prompt_tokens import prompts_of
from blend.planners.request import PlanRequest
from blend.planners.tree import TokenIds, lexicographic_order


def _plan(
    name: PlannerName, order: list[int] | np.ndarray, batch_size: int, **params: object
) -> Plan:
    return Plan(
        planner=name,
        order=np.asarray(order, dtype=np.int64),
        batches=fixed_size_batches(len(order), batch_size),
        sides=no_sides(len(order)),
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
        return _plan(self.name, np.arange(len(requests)), self.batch_size)


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
        order = lexicographic_order(prompts_of(requests))
        return _plan(self.name, order, self.batch_size)


def longest_first_order(prompts: Sequence[TokenIds], estimates: np.ndarray) -> np.ndarray:
    """lpt's order of `prompts` (int64 positions): the longest estimated output first, ties in
    depth-first (lexicographic) order. Estimates only: never true lengths."""
    dfs = lexicographic_order(prompts)
    rank = np.empty(len(dfs), dtype=np.int64)
    rank[dfs] = np.arange(len(dfs))
    return np.lexsort((rank, -np.asarray(estimates, dtype=np.float64)))


@dataclass(frozen=True, slots=True)
class LptPlanner:
    """Longest processing time first: the requests by estimated output length, longest first,
    ties in depth-first (prompt trie) order, fed in order.

    The longest outputs are the critical path of a run (their tokens take as many steps one
    after the other), so starting them first lets the rest fill the steps beside them instead
    of leaving them alone at the end. Estimates are per prefix group (estimates.py), so a
    group of equal estimates stays together in DFS order and keeps its prefix sharing. The
    peer that credits BlendServe's gains to their cause: its admission and blend, not the
    longest-first start alone.
    """

    batch_size: int = 256
    name: PlannerName = PlannerName.LPT
    uses_lengths: bool = True
    admission: AdmissionKind = AdmissionKind.IN_ORDER

    def plan(
        self, requests: Sequence[PlanRequest], estimates: OutputEstimates | None = None
    ) -> Plan:
        estimates = estimates if estimates is not None else estimate_outputs(requests)
        order = longest_first_order(prompts_of(requests), estimates.tokens)
        return _plan(
            self.name,
            order,
            self.batch_size,
            estimate_sources=estimates.source_counts(),
        )
