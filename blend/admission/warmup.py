"""The warm-up phase: run a sample first, measure its output lengths, then hand over to the
policy of the rest, which the run's owner makes from what was measured (its re-plan).

Invariant: the warm-up requests are handed over first, in order; once all of them are in the
engine and `done_fraction` of them have finished (or the engine has nothing left to run), the
warm-up ends: `outcome` holds what was measured (the finished requests' lengths and the
still-running ones' lengths so far, lower bounds) and the policy admits nothing until its
owner calls `hand_over` with the policy of every other request (the engine loop yields to the
owner at that point, before the engine steps again: blend/engines/loop.py, and the
simulator's loop does the same). From then on the rest's policy sees only its own requests'
finishes, and those of the warm-up requests it adopted (AdoptsInFlight: counted in its KV
projection). Waiting for the slowest few is not worth an idle engine: the re-plan treats
them as censored. Admission only admits: re-planning belongs to the run's owner.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from blend.admission.base import AdmissionPolicy, AdoptsInFlight, EngineView


@dataclass(frozen=True, slots=True)
class WarmupOutcome:
    """What the warm-up measured (output tokens by request index)."""

    finished: dict[int, int]  # requests that finished: their output length
    running: dict[int, int]  # requests still running: their output tokens so far
    step: int  # engine step at the re-plan


class _Filtered:
    """An engine view whose `finished` leaves out the warm-up's requests."""

    def __init__(self, engine: EngineView, finished: Sequence[tuple[int, int]]) -> None:
        self._engine = engine
        self.finished = finished

    @property
    def step(self) -> int:
        return self._engine.step

    @property
    def num_running(self) -> int:
        return self._engine.num_running

    @property
    def num_waiting(self) -> int:
        return self._engine.num_waiting

    @property
    def kv_blocks_used(self) -> int:
        return self._engine.kv_blocks_used

    @property
    def kv_blocks_total(self) -> int:
        return self._engine.kv_blocks_total

    @property
    def block_size(self) -> int:
        return self._engine.block_size

    def generated_of(self, indices: np.ndarray) -> np.ndarray:
        return self._engine.generated_of(indices)


@dataclass(slots=True)
class WarmupThenRest:
    """Feed `warmup` in order; once it has run, the policy its owner hands over."""

    warmup: Sequence[int]
    n_rest: int  # requests the rest's policy will admit (for num_remaining before it)
    window: int = 512  # warm-up requests in flight at most
    done_fraction: float = 0.9
    measured: dict[int, int] = field(default_factory=dict)
    outcome: WarmupOutcome | None = None  # what the warm-up measured, once it ended
    replanned_at_step: int | None = None  # engine step at the end of the warm-up
    _next: int = 0
    _inflight: set[int] = field(default_factory=set)
    _after: AdmissionPolicy | None = None
    # the rest's adopted warm-up requests (AdoptsInFlight), read at the hand-over: the same
    # set it updates, so their finishes go on reaching it
    _adopted: set[int] = field(default_factory=set)

    @property
    def num_remaining(self) -> int:
        if self._after is not None:
            return self._after.num_remaining
        return len(self.warmup) - self._next + self.n_rest

    @property
    def awaiting_rest(self) -> bool:
        """The warm-up ended and the owner has not handed over the rest's policy yet."""
        return self.outcome is not None and self._after is None

    def hand_over(self, rest: AdmissionPolicy) -> None:
        """From now on admit by `rest` (made from `outcome`; any adopted warm-up requests
        already counted in it, see adopt_running)."""
        if not self.awaiting_rest:
            raise RuntimeError("hand_over: the warm-up has not ended or was handed over")
        self._after = rest
        if isinstance(rest, AdoptsInFlight):  # the same set it updates: it hears their ends
            self._adopted = rest.adopted

    def admit(self, engine: EngineView) -> list[int]:
        others = []
        for index, tokens in engine.finished:
            if index in self._inflight:
                self._inflight.discard(index)
                self.measured[index] = tokens
                if index in self._adopted:  # the re-planned policy counts it: it must see it end
                    others.append((index, tokens))
            else:
                others.append((index, tokens))
        if self._after is not None:
            return self._after.admit(_Filtered(engine, others))
        if self.outcome is not None:  # ended: nothing to admit until the owner hands over
            return []
        admitted = list(self.warmup[self._next : self._next + self.window - len(self._inflight)])
        self._next += len(admitted)
        self._inflight.update(admitted)
        if admitted or not self._warmup_done(engine):
            return admitted
        running = np.asarray(sorted(self._inflight), dtype=np.int64)
        self.outcome = WarmupOutcome(
            finished=dict(self.measured),
            running=dict(zip(running.tolist(), engine.generated_of(running).tolist(), strict=True)),
            step=engine.step,
        )
        self.replanned_at_step = engine.step
        return []

    def _warmup_done(self, engine: EngineView) -> bool:
        if self._next < len(self.warmup):
            return False
        idle = engine.num_running == 0 and engine.num_waiting == 0
        needed = math.ceil(self.done_fraction * len(self.warmup))
        return idle or len(self.measured) >= needed


def adopt_running(
    policy: AdmissionPolicy,
    estimates: Mapping[int, tuple[float, float]],
    prompt_tokens: Mapping[int, float],
) -> None:
    """Hand the warm-up requests still running at the re-plan to `policy`, if it counts
    requests it did not admit: by index, their (estimate, spread) and prompt tokens."""
    if not isinstance(policy, AdoptsInFlight):
        return
    for index, (estimate, spread) in estimates.items():
        policy.adopt(index, prompt_tokens[index], estimate, spread)


RestOfRun = Callable[[WarmupOutcome], AdmissionPolicy]  # the owner's re-plan: the rest's policy


def hand_over_if_ended(policy: AdmissionPolicy, rest_of_run: RestOfRun) -> bool:
    """The owner's step whenever the engine loop yields to it: if `policy` is a warm-up that
    has ended, make the rest's policy from what it measured and hand over (True)."""
    if not isinstance(policy, WarmupThenRest) or not policy.awaiting_rest:
        return False
    assert policy.outcome is not None
    policy.hand_over(rest_of_run(policy.outcome))
    return True
