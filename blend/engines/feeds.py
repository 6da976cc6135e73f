"""Simple feeds: a fixed order handed over a window ahead (what every in-order plan needs)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from blend.engines.base import EngineOutput, EngineRequest, EngineState


class OrderedFeed:
    """`requests` in their order, at most `window` in flight (handed over, not finished).

    Default window: two steps' worth (2 x the engine's max_num_seqs), which vLLM's
    first-come-first-served admission runs exactly as the whole order queued at once.
    """

    def __init__(self, requests: Iterable[EngineRequest], window: int | None = None) -> None:
        self._pending = iter(requests)
        self._window = window
        self._inflight = 0
        self._exhausted = False

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    @property
    def paused(self) -> bool:
        return False  # one phase only

    def take(self, state: EngineState, finished: Sequence[EngineOutput]) -> list[EngineRequest]:
        self._inflight -= len(finished)
        window = self._window or 2 * state.max_num_seqs
        taken: list[EngineRequest] = []
        while not self._exhausted and self._inflight + len(taken) < window:
            request = next(self._pending, None)
            if request is None:
                self._exhausted = True
                break
            taken.append(request)
        self._inflight += len(taken)
        return taken
