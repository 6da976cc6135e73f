"""The planner interface: an Enum of names, a protocol, and a factory.

A planner sees the requests (token ids and output limits), never the engine, and returns a
Plan: a permutation of the requests in the order the engine is fed, with a batch number per
position (the unit the executor checkpoints at) and, for blended plans, the scanner side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class PlannerName(StrEnum):
    FCFS = "fcfs"  # input order
    RANDOM = "random"  # seeded shuffle: balances load, destroys prefix sharing
    DFS = "dfs"  # prefix-tree depth-first: maximises prefix-cache hits


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """What a planner may know of one request."""

    request_id: str
    prompt_token_ids: Sequence[int]
    max_tokens: int  # output token limit (an upper bound on the output length)


@dataclass(frozen=True, slots=True)
class Plan:
    """A permutation of the requests (indices into the planner's input) plus batching."""

    planner: PlannerName
    order: list[int]
    batches: list[int]  # batch number of each position, non-decreasing from 0
    sides: list[str | None]  # "L" / "R" for blended plans, None otherwise
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.order)
        if sorted(self.order) != list(range(n)):
            raise ValueError(f"{self.planner} plan is not a permutation of {n} requests")
        if len(self.batches) != n or len(self.sides) != n:
            raise ValueError(f"{self.planner} plan: order, batches and sides differ in length")


class Planner(Protocol):
    @property
    def name(self) -> PlannerName: ...

    def plan(self, requests: Sequence[PlanRequest]) -> Plan: ...


def fixed_size_batches(n: int, batch_size: int) -> list[int]:
    """Batch number of each of n positions, batch_size positions per batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [i // batch_size for i in range(n)]


def make_planner(name: str | PlannerName, *, seed: int = 0, batch_size: int = 256) -> Planner:
    """The planner called `name`; `seed` feeds randomised planners."""
    from blend.planners.simple import DfsPlanner, FcfsPlanner, RandomPlanner

    try:
        planner_name = PlannerName(name)
    except ValueError:
        known = ", ".join(p.value for p in PlannerName)
        raise ValueError(f"Unknown planner: {name!r} (known: {known})") from None
    if planner_name is PlannerName.FCFS:
        return FcfsPlanner(batch_size=batch_size)
    if planner_name is PlannerName.RANDOM:
        return RandomPlanner(batch_size=batch_size, seed=seed)
    if planner_name is PlannerName.DFS:
        return DfsPlanner(batch_size=batch_size)
    raise ValueError(f"Unknown planner: {name!r}")
