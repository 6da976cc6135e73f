"""An engine that survives engine failures: restart with smaller budgets, isolate bad requests.

Invariant: every request the feed hands over is yielded exactly once, as the inner engine's
output or as an error row. When the inner engine raises (a crash, out of memory), the
requests it held and had not finished are handed, first and in their order, to a fresh
engine with halved budgets (max_num_seqs, max_num_batched_tokens, and the requests in
flight: down to one at a time). A restart that fails to start counts as a failure too; the
first start does not (a model that cannot start at all fails at once). A request that is
alone in flight when the engine fails, for `max_request_failures` failures, becomes an error
row naming the failure, the budgets go back to where they started, and the run goes on. More
than `max_restarts` failures in one execution raise `EngineFailedError` (the run is
resumable). The run's owner may also ask for a restart with other settings (`restart_with`,
taking effect before the next step): the same hand-over, no failure counted.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from blend.engines.base import (
    Engine,
    EngineConfig,
    EngineOutput,
    EngineRequest,
    EngineState,
    EngineStats,
    Feed,
)
from blend.engines.settings import EngineSettings

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
    max_num_batched_tokens: int


def reduced_config(
    config: EngineConfig, running: EngineSettings, max_model_len: int | None
) -> EngineConfig:
    """Half the budgets the engine ran with (at least one sequence).

    max_num_batched_tokens stays >= max_model_len when the engine runs without chunked
    prefill (the CPU build): a step must fit a whole prompt.
    """
    seqs = max(1, running.max_num_seqs // 2)
    tokens = max(running.max_num_batched_tokens // 2, seqs)
    if not running.chunked_prefill:
        tokens = max(tokens, max_model_len or 1)
    return config.with_settings(
        dataclasses.replace(running, max_num_seqs=seqs, max_num_batched_tokens=tokens)
    )


class _SourceError(Exception):
    """An error raised by the feed, not by the engine: never retried."""


class _SupervisedFeed:
    """The feed as one engine sees it: requests a stopped engine left unfinished first, and
    never more than `limit` requests in flight (None: as many as the feed hands over).

    What the feed hands over beyond the limit waits in `backlog` (the feed counts it as
    handed over); finishes the feed has not heard of yet wait in `unheard`.
    """

    def __init__(
        self,
        upstream: Feed,
        backlog: deque[EngineRequest],
        inflight: dict[str, EngineRequest],
        unheard: list[EngineOutput],
        limit: int | None,
    ) -> None:
        self._upstream, self._backlog, self._inflight = upstream, backlog, inflight
        self._unheard, self._limit = unheard, limit

    @property
    def exhausted(self) -> bool:
        return not self._backlog and self._upstream.exhausted

    @property
    def paused(self) -> bool:
        return self._upstream.paused

    def take(self, state: EngineState, finished: Sequence[EngineOutput]) -> list[EngineRequest]:
        self._unheard.extend(finished)
        room = len(self._backlog) + 1 if self._limit is None else self._limit
        room -= len(self._inflight)
        taken = [self._backlog.popleft() for _ in range(min(room, len(self._backlog)))]
        if not self._backlog and (room > len(taken) or self._limit is None):
            heard = list(self._unheard)
            self._unheard.clear()
            try:
                more = self._upstream.take(state, heard)
            except Exception as exc:
                raise _SourceError(str(exc)) from exc
            fits = len(more) if self._limit is None else max(0, room - len(taken))
            taken += more[:fits]
            self._backlog.extend(more[fits:])
        for request in taken:
            self._inflight[request.request_id] = request
        return taken


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
        self.n_settings_restarts = 0  # restarts the owner asked for (other settings)
        self._asked_restart: tuple[EngineConfig, str] | None = None  # (config, why)
        self._inflight_limit: int | None = None  # halved by failures: isolates a bad request
        self.start_seconds = 0.0
        self.max_model_len = 0
        self.name = "unknown"
        self.version = "unknown"
        self.params: dict[str, object] = {}  # the running engine's own, for lineage
        self.settings = EngineSettings(1, 1)  # the running engine's, once started
        self._start()

    @property
    def config(self) -> EngineConfig:
        """The budgets of the engine now running."""
        return self._config

    def params_json(self) -> str:
        """The running engine's parameters as lineage records them (sorted JSON): its config
        without the model folder, the settings it runs with (vLLM's defaults filled in) and
        the engine's own (hetegen: its placement)."""
        config = self._config
        params: dict[str, object] = {
            name: (str(value) if isinstance(value, Path) else value)
            for name, value in (
                (f.name, getattr(config, f.name))
                for f in dataclasses.fields(config)
                if f.name != "model_dir"
            )
        }
        params["max_model_len"] = self.max_model_len
        params["max_num_seqs"] = self.settings.max_num_seqs
        params["max_num_batched_tokens"] = self.settings.max_num_batched_tokens
        params["chunked_prefill"] = self.settings.chunked_prefill
        params.update(self.params)
        return orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()

    def restart_with(self, config: EngineConfig, reason: str) -> None:
        """Restart the engine with `config` before its next step (call it while `generate`
        has yielded): the requests in flight go to the new engine first, their work so far
        redone."""
        self._asked_restart = (config, reason)

    @property
    def busy_seconds(self) -> float:
        current = self._engine.busy_seconds if self._engine is not None else 0.0
        return self._closed_busy_s + current

    def generate(self, feed: Feed) -> Iterator[list[EngineOutput]]:
        retry: deque[EngineRequest] = deque()  # handed over, not in an engine: fed first
        inflight: dict[str, EngineRequest] = {}  # taken by the running engine, not finished
        unheard: list[EngineOutput] = []  # finished outside an engine: the feed hears next
        while True:
            engine = self._running_engine()
            wrapped = _SupervisedFeed(feed, retry, inflight, unheard, self._inflight_limit)
            steps = engine.generate(wrapped)
            try:
                for finished in steps:
                    for output in finished:
                        inflight.pop(output.request_id, None)
                    yield finished
                    if self._asked_restart is not None:  # the owner asked, while we yielded
                        # the engine's loop stops here: what it yielded last (refusals at a
                        # pause), the feed has not heard yet
                        unheard.extend(finished)
                        break
                else:
                    return
            except _SourceError as exc:
                raise exc.__cause__ or exc from None
            except Exception as exc:  # an engine failure of any kind: restart and go on
                isolated = self._on_failure(exc, inflight)
                if isolated is not None:
                    unheard.append(isolated)
                    yield [isolated]
            if self._asked_restart is not None:
                config, reason = self._asked_restart
                self._asked_restart = None
                log.info("restarting the engine: %s", reason)
                self._stop()
                self._config = self._initial_config = config
                self.n_settings_restarts += 1
            # what the stopped engine held was taken before what is still waiting
            retry = deque([*inflight.values(), *retry])
            inflight.clear()

    def _on_failure(
        self, exc: Exception, inflight: dict[str, EngineRequest]
    ) -> EngineOutput | None:
        """Record a failure, pick the next budgets; returns an isolated request's error row."""
        error = f"{type(exc).__name__}: {exc}"
        running = self.settings
        self._record_failure(error, len(inflight))
        log.warning("engine failed with %d requests in flight: %s", len(inflight), error)
        self._stop()
        if len(self.failures) > self._policy.max_restarts:
            raise EngineFailedError(
                f"the engine failed {len(self.failures)} times (last: {error}); "
                "resume the run once the cause is fixed"
            ) from exc
        if len(inflight) != 1:
            self._config = reduced_config(self._config, running, self.max_model_len or None)
            self._inflight_limit = max(1, len(inflight) // 2)
            return None
        request = next(iter(inflight.values()))
        strikes = self._strikes.get(request.request_id, 0) + 1
        self._strikes[request.request_id] = strikes
        if strikes < self._policy.max_request_failures:
            return None
        inflight.pop(request.request_id)
        self._config = self._initial_config  # the failures are explained: full budgets again
        self._inflight_limit = None
        return EngineOutput.failed(
            request, f"engine failed {strikes} times with this request alone in flight: {error}"
        )

    def _record_failure(self, error: str, n_inflight: int) -> None:
        self.failures.append(
            EngineFailure(
                error=error,
                n_inflight=n_inflight,
                max_num_seqs=self.settings.max_num_seqs,
                max_num_batched_tokens=self.settings.max_num_batched_tokens,
            )
        )

    def _running_engine(self) -> Engine:
        while self._engine is None:
            try:
                self._start()
            except Exception as exc:
                self._record_failure(f"engine start: {type(exc).__name__}: {exc}", 0)
                if len(self.failures) > self._policy.max_restarts:
                    raise EngineFailedError(
                        f"the engine failed {len(self.failures)} times (last start: {exc})"
                    ) from exc
                self._config = reduced_config(
                    self._config, self._asked_settings(), self.max_model_len or None
                )
        return self._engine

    def _asked_settings(self) -> EngineSettings:
        """The settings the current config asks for (the last engine's where it names none)."""
        config, last = self._config, self.settings
        return dataclasses.replace(
            last,
            max_num_seqs=config.max_num_seqs or last.max_num_seqs,
            max_num_batched_tokens=config.max_num_batched_tokens or last.max_num_batched_tokens,
        )

    def _start(self) -> None:
        started = time.perf_counter()
        try:
            engine = self._factory(self._config)
        finally:
            self.start_seconds += time.perf_counter() - started
        self._engine = engine
        self.name, self.version = engine.name, engine.version
        self.params = dict(getattr(engine, "params", {}))
        self.max_model_len = engine.max_model_len
        self.settings = engine.settings

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

    def state(self) -> EngineState:
        if self._engine is None:
            raise RuntimeError("no engine is running")
        return self._engine.state()

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
