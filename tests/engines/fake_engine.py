"""A deterministic stand-in engine for unit tests of the executor (never used by users)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from blend.engines.base import EngineConfig, EngineOutput, EngineRequest, EngineStats


class FakeEngine:
    """Echoes the last prompt token `max_tokens` times, one request finished per step.

    Holds up to `config.inflight_window` requests. Failure injection: `crash_after` raises
    after that many outputs; `poison` request ids make every step raise while one of them is
    in flight; `oom_above` raises MemoryError on a step when more than that many requests are
    in flight; `start_error` makes the constructor raise.
    """

    name = "fake"
    version = "0"
    start_seconds = 0.0

    def __init__(
        self,
        config: EngineConfig,
        max_model_len: int = 64,
        crash_after: int | None = None,
        poison: frozenset[str] = frozenset(),
        oom_above: int | None = None,
        idle_steps: int = 0,
        idle_step_s: float = 0.0,
        start_error: Exception | None = None,
    ):
        if start_error is not None:
            raise start_error
        self.config = config
        self.max_model_len = max_model_len
        self.crash_after = crash_after
        self.poison = poison
        self.oom_above = oom_above
        self.idle_steps = idle_steps  # empty steps (heartbeats) before each finished request
        self.idle_step_s = idle_step_s  # how long each of them takes (s)
        self.seen: list[str] = []
        self.closed = False
        self.busy_seconds = 0.0
        self.n_outputs = 0

    def generate(self, requests: Iterable[EngineRequest]) -> Iterator[list[EngineOutput]]:
        pending = iter(requests)
        inflight: list[EngineRequest] = []
        while True:
            while len(inflight) < self.config.inflight_window:
                request = next(pending, None)
                if request is None:
                    break
                self.seen.append(request.request_id)
                inflight.append(request)
            if not inflight:
                return
            self._check_failures(inflight)
            for _ in range(self.idle_steps):
                time.sleep(self.idle_step_s)
                yield []
            yield [self._output(inflight.pop(0))]
            self.n_outputs += 1

    def _check_failures(self, inflight: list[EngineRequest]) -> None:
        if self.crash_after is not None and self.n_outputs >= self.crash_after:
            raise RuntimeError("engine died")
        if any(r.request_id in self.poison for r in inflight):
            raise RuntimeError("poisoned step")
        if self.oom_above is not None and len(inflight) > self.oom_above:
            raise MemoryError(f"{len(inflight)} requests do not fit")

    def _output(self, request: EngineRequest) -> EngineOutput:
        now = datetime.now(UTC)
        too_long = len(request.prompt_token_ids) >= self.max_model_len
        tokens = (
            None if too_long else [request.prompt_token_ids[-1]] * request.sampling["max_tokens"]
        )
        return EngineOutput(
            request_id=request.request_id,
            output_text=None if too_long else " ".join(map(str, tokens or [])),
            output_token_ids=tokens,
            finish_reason="error" if too_long else "length",
            n_prompt_tokens=len(request.prompt_token_ids),
            n_cached_tokens=0,
            error="prompt too long" if too_long else None,
            started_at=now,
            finished_at=now,
        )

    def stats(self) -> EngineStats:
        return EngineStats(prefix_cache_queries=0, prefix_cache_hits=0)

    def close(self) -> None:
        self.closed = True
