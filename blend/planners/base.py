"""The planner interface: an Enum of names, the Plan a planner returns, and its protocol.

A planner sees the requests (token ids, output limits) and their output-length estimates,
never the engine, and returns a Plan: a permutation of the requests, a batch number per
position (the unit the executor checkpoints at), the scanner side of blended plans, and how
the engine is to be fed (in plan order, or by BlendServe's online dual scan).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from blend.planners.estimates import OutputEstimates
from blend.planners.request import PlanRequest


class PlannerName(StrEnum):
    FCFS = "fcfs"  # input order
    RANDOM = "random"  # seeded shuffle: balances load, destroys prefix sharing
    DFS = "dfs"  # prefix-tree depth-first: maximises prefix-cache hits
    LPT = "lpt"  # longest estimated output first, ties in depth-first order
    NAIVE_BLEND = "naive-blend"  # prefix groups by density, taken alternately from both ends
    BATCHLLM = "batchllm"  # prefix groups kept together, the largest decode share first
    BLENDSERVE = "blendserve"  # resource-aware prefix tree + online dual scan (docs/papers.md)
    LP_GATE = "lp-gate"  # DFS order, classes admitted by the fluid LP's prefill shares


class AdmissionKind(StrEnum):
    """How a plan's requests are fed to the engine (the admission policy, blend/admission)."""

    IN_ORDER = "in-order"  # the plan order, a window ahead of the engine (vLLM admits FCFS)
    DUAL_SCAN = "dual-scan"  # BlendServe's two scanners, admitting by their memory shares
    LP_GATE = "lp-gate"  # the fluid LP's prefill shares pick the class admitted next


class ScanSide(StrEnum):
    """The scanner of a blended plan that emitted a position (stored in plan_items.side,
    where warm-up positions read "W")."""

    LEFT = "L"  # the compute-heavy end
    RIGHT = "R"  # the memory-heavy end


@dataclass(frozen=True, slots=True)
class Plan:
    """A permutation of the requests (indices into the planner's input) plus batching.

    Held as arrays (any sequence given is taken as one): at 10M positions Python lists of the
    order, batches and sides held ~1 GB."""

    planner: PlannerName
    order: np.ndarray  # int64 request index of each position
    batches: np.ndarray  # int64 batch number of each position, non-decreasing from 0
    sides: np.ndarray  # object: the scanner of each position (blended plans), else None
    params: dict[str, Any] = field(default_factory=dict)
    admission: AdmissionKind = AdmissionKind.IN_ORDER  # how the executor feeds the engine

    def __post_init__(self) -> None:
        order = np.asarray(self.order, dtype=np.int64).reshape(-1)
        object.__setattr__(self, "order", order)
        object.__setattr__(self, "batches", np.asarray(self.batches, dtype=np.int64))
        if not (isinstance(self.sides, np.ndarray) and self.sides.dtype == object):
            sides = np.empty(len(self.sides), dtype=object)
            sides[:] = list(self.sides)
            object.__setattr__(self, "sides", sides)
        n = len(order)
        if not _is_permutation(order):
            raise ValueError(f"{self.planner} plan is not a permutation of {n} requests")
        if len(self.batches) != n or len(self.sides) != n:
            raise ValueError(f"{self.planner} plan: order, batches and sides differ in length")


def _is_permutation(order: np.ndarray) -> bool:
    """Every index 0..n-1 once (a mark each: no sorted copy of the order)."""
    n = len(order)
    if n == 0:
        return True
    if int(order.min()) < 0 or int(order.max()) >= n:
        return False
    seen = np.zeros(n, dtype=bool)
    seen[order] = True
    return bool(seen.all())


def no_sides(n: int) -> np.ndarray:
    """The sides of a plan that is not blended: None at every position."""
    return np.full(n, None, dtype=object)


class Planner(Protocol):
    @property
    def name(self) -> PlannerName: ...

    @property
    def uses_lengths(self) -> bool:
        """Whether output-length estimates change the order (then it is re-planned once the
        warm-up has measured lengths)."""
        ...

    def plan(
        self, requests: Sequence[PlanRequest], estimates: OutputEstimates | None = None
    ) -> Plan:
        """Order `requests`; `estimates` default to their own lengths, else max_tokens."""
        ...


def fixed_size_batches(n: int, batch_size: int) -> np.ndarray:
    """Batch number of each of n positions (int64), batch_size positions per batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return np.arange(n, dtype=np.int64) // batch_size
