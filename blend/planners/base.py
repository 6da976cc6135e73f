"""The planner interface: an Enum of names, a protocol, and a factory.

A planner sees the requests (token ids and output limits), never the engine, and returns a
Plan: a permutation of the requests in the order the engine is fed, with a batch number per
position (the unit the executor checkpoints at) and, for blended plans, the scanner side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from blend.cost import CostModel


class PlannerName(StrEnum):
    FCFS = "fcfs"  # input order
    RANDOM = "random"  # seeded shuffle: balances load, destroys prefix sharing
    DFS = "dfs"  # prefix-tree depth-first: maximises prefix-cache hits
    NAIVE_BLEND = "naive-blend"  # prefix groups by density, taken alternately from both ends
    BLENDSERVE = "blendserve"  # resource-aware prefix tree + dual scanner (papers.md s.1)


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """What a planner may know of one request."""

    request_id: str
    prompt_token_ids: Sequence[int]
    max_tokens: int  # output token limit (an upper bound on the output length)
    # true output length (tokens) when the planner may know it: oracle runs, or warm-up
    # requests whose length was revealed by running them first; None when unknown
    output_len: int | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """A permutation of the requests (indices into the planner's input) plus batching."""

    planner: PlannerName
    order: list[int]
    batches: list[int]  # batch number of each position, non-decreasing from 0
    sides: list[str | None]  # "L" / "R" for blended plans ("W" warm-up), None otherwise
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.order)
        if sorted(self.order) != list(range(n)):
            raise ValueError(f"{self.planner} plan is not a permutation of {n} requests")
        if len(self.batches) != n or len(self.sides) != n:
            raise ValueError(f"{self.planner} plan: order, batches and sides differ in length")


@dataclass(frozen=True, slots=True)
class StepBudgets:
    """Per-step engine budgets a planner recommends (None: no recommendation)."""

    max_num_seqs: int | None = None  # running requests
    max_num_batched_tokens: int | None = None  # tokens per step

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> StepBudgets:
        def positive_int(name: str) -> int | None:
            value = params.get(name)
            return value if isinstance(value, int) and value > 0 else None

        return cls(positive_int("max_num_seqs"), positive_int("max_num_batched_tokens"))


class Planner(Protocol):
    @property
    def name(self) -> PlannerName: ...

    def plan(self, requests: Sequence[PlanRequest]) -> Plan: ...


def fixed_size_batches(n: int, batch_size: int) -> list[int]:
    """Batch number of each of n positions, batch_size positions per batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [i // batch_size for i in range(n)]


DEFAULT_MODEL_SPEC = "llama-3.1-8b"
DEFAULT_HARDWARE = "a100-80g"


def make_planner(
    name: str | PlannerName,
    *,
    seed: int = 0,
    batch_size: int = 256,
    model_spec: str | None = None,
    hardware: str | None = None,
    warmup_fraction: float = 0.01,
    cost: CostModel | None = None,
) -> Planner:
    """The planner called `name`; `seed` feeds randomised planners and the warm-up sample.

    Resource-aware planners cost requests with `model_spec` on `hardware` (names from
    blend/specs or JSON paths; defaults llama-3.1-8b on a100-80g); `warmup_fraction` is the
    share of requests they run first to learn output lengths. A ready `cost` model (e.g. one
    built from JSON spec files) takes precedence over the names.
    """
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
    if planner_name in (PlannerName.BLENDSERVE, PlannerName.NAIVE_BLEND):
        from blend.cost import CostModel, load_hardware, load_model_spec
        from blend.planners.blendserve import BlendServePlanner, NaiveBlendPlanner

        cost = cost or CostModel(
            load_model_spec(model_spec or DEFAULT_MODEL_SPEC),
            load_hardware(hardware or DEFAULT_HARDWARE),
        )
        cls = BlendServePlanner if planner_name is PlannerName.BLENDSERVE else NaiveBlendPlanner
        return cls(cost=cost, batch_size=batch_size, seed=seed, warmup_fraction=warmup_fraction)
    raise ValueError(f"Unknown planner: {name!r}")
