"""Admission: which requests enter the engine next, decided while the engine runs.

Invariant: a policy hands every request of its sequence to the engine exactly once, and never
leaves an idle engine waiting: when nothing runs or waits in the engine, `admit` returns at
least one request while any remain. Policies see the engine only through `EngineView`, so the
same policy object drives the real executor (vLLM's add_request / step) and the simulator.
The driver calls `admit` once before the first step and again after every step in which
requests finished or the engine scheduled the last request it had waiting (and whenever the
engine is idle): only finishes free slots and KV blocks, and a dry queue is the engine asking
for more; between those events a policy is not asked (the simulator skips ahead over them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


class EngineView(Protocol):
    """What a policy may read of the engine after a step (requests named by index)."""

    @property
    def step(self) -> int:
        """Engine steps so far."""
        ...

    @property
    def num_running(self) -> int:
        """Requests the scheduler runs (scheduled in the last step)."""
        ...

    @property
    def num_waiting(self) -> int:
        """Requests handed to the engine and not running (never started, or preempted)."""
        ...

    @property
    def kv_blocks_used(self) -> int:
        """KV blocks held by running requests."""
        ...

    @property
    def kv_blocks_total(self) -> int:
        """KV blocks in the cache."""
        ...

    @property
    def block_size(self) -> int:
        """Tokens per KV block."""
        ...

    @property
    def finished(self) -> Sequence[tuple[int, int]]:
        """(request index, output tokens) of requests finished since the last admit call."""
        ...

    def generated_of(self, indices: np.ndarray) -> np.ndarray:
        """Output tokens so far of requests in flight (int64; 0 before their first token)."""
        ...


@runtime_checkable
class AdoptsInFlight(Protocol):
    """A policy that can count requests it did not admit (the warm-up's still running when
    it takes over): their finishes reach its admit too."""

    adopted: set[int]

    def adopt(self, index: int, prompt_tokens: float, estimate: float, spread: float) -> None: ...


class AdmissionPolicy(Protocol):
    @property
    def num_remaining(self) -> int:
        """Requests not yet handed to the engine."""
        ...

    def admit(self, engine: EngineView) -> list[int]:
        """Indices of the requests to hand to the engine now, in that order."""
        ...


@dataclass(slots=True)
class InOrderAdmission:
    """The plan order, at most `window` requests in flight (handed over and not finished).

    vLLM admits its waiting requests first come, first served, so a window of at least two
    steps' worth of requests (2 x max_num_seqs) runs exactly as the whole order queued at
    once would: the head of the queue is never missing.
    """

    order: Sequence[int]
    window: int
    _next: int = 0
    _inflight: int = 0

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"admission window must be >= 1 request, got {self.window}")

    @property
    def num_remaining(self) -> int:
        return len(self.order) - self._next

    def admit(self, engine: EngineView) -> list[int]:
        self._inflight -= len(engine.finished)
        take = min(self.window - self._inflight, len(self.order) - self._next)
        if take <= 0:
            return []
        batch = list(self.order[self._next : self._next + take])
        self._next += take
        self._inflight += take
        return batch
