"""The executor's feed: an admission policy over plan positions, speaking to a real engine.

Invariant: the policy names plan positions (seq); this feed turns its choices into engine
requests (RequestLoader) and the engine's state and finishes back into positions, and asks
the policy at the same events the simulator does (a finish, a dry waiting queue, an idle
engine: admission/base.py), so the policy object is the very one the simulator drives
(blend/simulate/engine.py) and sees the same moments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from blend.admission.base import AdmissionPolicy
from blend.admission.warmup import WarmupThenRest
from blend.engines.base import EngineOutput, EngineRequest, EngineState


class RequestSource(Protocol):
    def take(self, seqs: Sequence[int]) -> list[EngineRequest]:
        """The engine requests of these positions (blend.plan.items.RequestLoader)."""
        ...


class _EngineView:
    """An EngineState seen by position (admission.base.EngineView)."""

    def __init__(
        self,
        state: EngineState,
        finished: list[tuple[int, int]],
        seq_of: dict[str, int],
        id_of: dict[int, str],
    ) -> None:
        self._state = state
        self.finished = finished
        self._id_of = id_of

    @property
    def step(self) -> int:
        return self._state.step

    @property
    def num_running(self) -> int:
        return self._state.num_running

    @property
    def num_waiting(self) -> int:
        return self._state.num_waiting

    @property
    def kv_blocks_used(self) -> int:
        return self._state.kv_blocks_used

    @property
    def kv_blocks_total(self) -> int:
        return self._state.kv_blocks_total

    @property
    def block_size(self) -> int:
        return self._state.block_size

    def generated_of(self, indices: np.ndarray) -> np.ndarray:
        generated = self._state.generated
        return np.fromiter(
            (generated.get(self._id_of.get(int(i), ""), 0) for i in indices),
            dtype=np.int64,
            count=len(indices),
        )


class AdmissionFeed:
    """Feeds an engine the requests an admission policy picks (by plan position)."""

    def __init__(self, policy: AdmissionPolicy, loader: RequestSource) -> None:
        self.policy = policy
        self._loader = loader
        self._seq_of: dict[str, int] = {}  # requests in flight: request id -> position
        self._id_of: dict[int, str] = {}
        self._waiting = 0  # the engine's waiting requests at the last call
        self._first = True
        self._was_paused = False  # the last call ended a phase (the owner acts before the next)

    @property
    def exhausted(self) -> bool:
        return self.policy.num_remaining == 0

    @property
    def paused(self) -> bool:
        """The warm-up ended and its owner has not handed over the rest's policy yet."""
        return isinstance(self.policy, WarmupThenRest) and self.policy.awaiting_rest

    def take(self, state: EngineState, finished: Sequence[EngineOutput]) -> list[EngineRequest]:
        done = []
        for output in finished:
            seq = self._seq_of.pop(output.request_id, None)
            if seq is not None:
                self._id_of.pop(seq, None)
                done.append((seq, output.n_output_tokens))
        drained = self._waiting > 0 and state.num_waiting == 0
        idle = state.num_running == 0 and state.num_waiting == 0
        self._waiting = state.num_waiting
        # the policy's events only; and right after its owner handed over, the new policy's
        # first word at the same event (as if the warm-up had handed over within this call)
        resumed = self._was_paused and not self.paused
        if not (done or drained or idle or self._first or resumed):
            return []
        self._first = False
        seqs = self.policy.admit(_EngineView(state, done, self._seq_of, self._id_of))
        self._was_paused = self.paused
        requests = self._loader.take(seqs)
        for seq, request in zip(seqs, requests, strict=True):
            self._seq_of[request.request_id] = seq
            self._id_of[seq] = request.request_id
        return requests
