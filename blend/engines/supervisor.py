"""An engine that survives engine failures: restart with smaller budgets, isolate bad requests.

Invariant: every request handed to `generate` is yielded exactly once, as the inner engine's
output or as an error row. When the inner engine raises (a crash, out of memory), the
requests it held and had not finished are handed, first and in their order, to a fresh
engine with halved budgets (max_num_seqs, max_num_batched_tokens, in-flight window; down to
one request at a time). A restart that fails to start counts as a failure too; the first
start does not (a model that cannot start at all fails at once). A request that is alone in
flight when the engine fails, for `max_request_failures` failures, becomes an error row
naming the failure, the budgets go back to where they started, and the run goes on. More
than `max_restarts` failures in one execution raise `EngineFailedError` (the run is
resumable).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from blend.engines.base import Engine, EngineConfig, EngineOutput, EngineRequest, EngineStats

log = logging.getLogger(__name__)

EngineFactory = Callable[[EngineConfig], Engine]


class EngineFailedError(RuntimeError):
    """The engine kept failing; the run stops and can be resumed."""


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    max_restarts: int = 16  # engine failures tolerated in one execution
    max_request_failures: int = 2  # failures with a request alone in flight -> error row


@dataclass(frozen=True, slots=True)
class EngineFailure:
    """One failure of the inner engine, as recorded in the run report."""

    error: str  # "ExceptionType: message"
    n_inflight: int  # requests the engine held and had not finished
    max_num_seqs: int  # budgets of the failed engine
    max_num_batched_tokens: int | None
    inflight_window: int


def reduced_config(config: EngineConfig, max_model_len: int | None) -> EngineConfig:
    """Half the budgets of `config` (at least one sequence and one request in flight).

    max_num_batched_tokens stays >= max_model_len: without chunked prefill (the CPU build) a
    step must fit a whole prompt.
    """
    tokens = config.max_num_batched_tokens
    if tokens is not None:
        tokens = max(tokens // 2, max_model_len or 1)
    return dataclasses.replace(
        config,
        max_num_seqs=max(1, config.max_num_seqs // 2),
        max_num_batched_tokens=tokens,
        max_inflight=max(1, config.inflight_window // 2),
    )


class _SourceError(Exception):
    """An error raised by the request source, not by the engine: never retried."""


class SupervisedEngine:
    """Wraps engines made by `factory`; restarts them on failure (see the module invariant)."""

    def __init__(
        self, factory: EngineFactory, config: EngineConfig, policy: RestartPolicy | None = None
    ) -> None:
        self._factory = factory
        self._initial_config = config
        self._config = config
        self._policy = policy or RestartPolicy()
        self._engine: Engine | None = None
        self._closed_stats = EngineStats(prefix_cache_queries=0, prefix_cache_hits=0)
        self._closed_busy_s = 0.0
        self._strikes: dict[str, int] = {}
        self.failures: list[EngineFailure] = []
        self.start_seconds = 0.0
        self.max_model_len = 0
        self.name = "unknown"
        self.version = "unknown"
        self._start()

    @property
    def config(self) -> EngineConfig:
        """The budgets of the engine now running."""
        return self._config

    @property
    def busy_seconds(self) -> float:
        current = self._engine.busy_seconds if self._engine is not None else 0.0
        return self._closed_busy_s + current

    def generate(self, requests: Iterable[EngineRequest]) -> Iterator[list[EngineOutput]]:
        upstream = iter(requests)
        retry: deque[EngineRequest] = deque()  # unfinished by a failed engine, fed first
        inflight: dict[str, EngineRequest] = {}  # taken by the running engine, not finished
        while True:
            engine = self._running_engine()
            try:
                for finished in engine.generate(self._feed(retry, upstream, inflight)):
                    for output in finished:
                        inflight.pop(output.request_id, None)
                    yield finished
                return
            except _SourceError as exc:
                raise exc.__cause__ or exc from None
            except Exception as exc:  # an engine failure of any kind: restart and go on
                isolated = self._on_failure(exc, inflight)
                # what the failed engine held was taken before what is still waiting
                retry = deque([*inflight.values(), *retry])
                inflight.clear()
                if isolated is not None:
                    yield [isolated]

    @staticmethod
    def _feed(
        retry: deque[EngineRequest],
        upstream: Iterator[EngineRequest],
        inflight: dict[str, EngineRequest],
    ) -> Iterator[EngineRequest]:
        """Requests for one engine: earlier engines' unfinished ones first, in their order."""
        while retry:
            request = retry.popleft()
            inflight[request.request_id] = request
            yield request
        while True:
            try:
                request = next(upstream)
            except StopIteration:
                return
            except Exception as exc:
                raise _SourceError(str(exc)) from exc
            inflight[request.request_id] = request
            yield request

    def _on_failure(
        self, exc: Exception, inflight: dict[str, EngineRequest]
    ) -> EngineOutput | None:
        """Record a failure, pick the next budgets; returns an isolated request's error row."""
        error = f"{type(exc).__name__}: {exc}"
        config = self._config
        self.failures.append(
            EngineFailure(
                error=error,
                n_inflight=len(inflight),
                max_num_seqs=config.max_num_seqs,
                max_num_batched_tokens=config.max_num_batched_tokens,
                inflight_window=config.inflight_window,
            )
        )
        log.warning("engine failed with %d requests in flight: %s", len(inflight), error)
        self._stop()
        if len(self.failures) > self._policy.max_restarts:
            raise EngineFailedError(
                f"the engine failed {len(self.failures)} times (last: {error}); "
                "resume the run once the cause is fixed"
            ) from exc
        if len(inflight) != 1:
            self._config = reduced_config(config, self.max_model_len or None)
            return None
        request = next(iter(inflight.values()))
        strikes = self._strikes.get(request.request_id, 0) + 1
        self._strikes[request.request_id] = strikes
        if strikes < self._policy.max_request_failures:
            return None
        inflight.pop(request.request_id)
        self._config = self._initial_config  # the failures are explained: full budgets again
        return EngineOutput.failed(
            request, f"engine failed {strikes} times with this request alone in flight: {error}"
        )

    def _running_engine(self) -> Engine:
        while self._engine is None:
            try:
                self._start()
            except Exception as exc:
                self.failures.append(
                    EngineFailure(
                        error=f"engine start: {type(exc).__name__}: {exc}",
                        n_inflight=0,
                        max_num_seqs=self._config.max_num_seqs,
                        max_num_batched_tokens=self._config.max_num_batched_tokens,
                        inflight_window=self._config.inflight_window,
                    )
                )
                if len(self.failures) > self._policy.max_restarts:
                    raise EngineFailedError(
                        f"the engine failed {len(self.failures)} times (last start: {exc})"
                    ) from exc
                self._config = reduced_config(self._config, self.max_model_len or None)
        return self._engine

    def _start(self) -> None:
        started = time.perf_counter()
        try:
            engine = self._factory(self._config)
        finally:
            self.start_seconds += time.perf_counter() - started
        self._engine = engine
        self.name, self.version = engine.name, engine.version
        self.max_model_len = engine.max_model_len

    def _stop(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        self._closed_busy_s += engine.busy_seconds
        try:
            stats = engine.stats()
            self._closed_stats = EngineStats(
                prefix_cache_queries=self._closed_stats.prefix_cache_queries
                + stats.prefix_cache_queries,
                prefix_cache_hits=self._closed_stats.prefix_cache_hits + stats.prefix_cache_hits,
            )
        except Exception:  # a crashed engine may not answer; its counters are lost
            log.warning("engine stats unavailable after failure", exc_info=True)
        try:
            engine.close()
        except Exception:
            log.warning("engine close failed after failure", exc_info=True)

    def stats(self) -> EngineStats:
        if self._engine is None:
            return self._closed_stats
        current = self._engine.stats()
        return EngineStats(
            prefix_cache_queries=self._closed_stats.prefix_cache_queries
            + current.prefix_cache_queries,
            prefix_cache_hits=self._closed_stats.prefix_cache_hits + current.prefix_cache_hits,
        )

    def close(self) -> None:
        self._stop()
