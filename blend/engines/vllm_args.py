"""What a VllmEngine hands vLLM: its engine arguments, and the few settings vLLM reads only
from the environment (set while the engine starts, then restored).

Everything that vLLM takes as an engine argument goes through EngineArgs, so two engines in
one process each get their own. Two settings are environment-only in vLLM 0.32:
- VLLM_ENABLE_V1_MULTIPROCESSING (engine core in its own process or in this one);
- VLLM_CPU_KVCACHE_SPACE, a legacy variable that, when set, overrides the KV size given as
  `kv_cache_memory_bytes` on the CPU build: it is removed while the engine starts, so the
  config's `kv_cache_gib` is what the engine gets.
vLLM caches its environment reads once an engine has started (vllm.envs.enable_envs_cache),
so that cache is cleared before the next engine reads it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from blend.engines.base import EngineConfig
from blend.engines.tokenize import model_max_len

MULTIPROCESSING_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
CPU_KV_SPACE_ENV = "VLLM_CPU_KVCACHE_SPACE"


def engine_kwargs(
    config: EngineConfig, *, on_cpu: bool, show_load_progress: bool
) -> dict[str, Any]:
    """vLLM EngineArgs keyword arguments for `config` (None: vLLM's offline default)."""
    kwargs: dict[str, Any] = dict(
        model=str(config.model_dir),
        max_model_len=config.max_model_len,
        max_num_seqs=config.max_num_seqs,
        max_num_batched_tokens=config.max_num_batched_tokens,
        enable_prefix_caching=config.enable_prefix_caching,
        dtype=config.dtype,
        seed=config.seed,
        gpu_memory_utilization=config.gpu_memory_utilization,
        tensor_parallel_size=config.tensor_parallel_size,
        num_gpu_blocks_override=config.num_gpu_blocks,
        cpu_offload_gb=config.cpu_offload_gb,
        use_tqdm_on_load=show_load_progress,
    )
    optional = dict(
        quantization=config.quantization,
        enforce_eager=config.enforce_eager,
        enable_chunked_prefill=config.enable_chunked_prefill,
    )
    kwargs.update({name: value for name, value in optional.items() if value is not None})
    kwargs.update(config.engine_args)
    if on_cpu:
        # the CPU build would reserve most of the node's memory for KV: size it here
        kwargs["kv_cache_memory_bytes"] = int(config.kv_cache_gib * 2**30)
        # vLLM 0.32's CPU runner crashes ("CPU Generator does not use offset") when a
        # request with its own seed is in a partial (chunked) prefill: schedule whole
        # prompts instead. GPU builds keep chunked prefill.
        kwargs["enable_chunked_prefill"] = False
        # Without chunked prefill a step must fit a whole prompt: a smaller budget (e.g.
        # one a plan names for another machine) is raised to max_model_len.
        if config.max_num_batched_tokens is not None:
            context = config.max_model_len or model_max_len(config.model_dir)
            kwargs["max_num_batched_tokens"] = max(config.max_num_batched_tokens, context)
    return kwargs


def engine_environment(config: EngineConfig, *, on_cpu: bool) -> dict[str, str | None]:
    """The environment-only settings for `config` (None: the variable must be unset)."""
    multiprocessing = config.multiprocessing
    if multiprocessing is None:
        multiprocessing = not on_cpu  # in-process on CPU: starts in ~4 s instead of ~25 s
    settings: dict[str, str | None] = {MULTIPROCESSING_ENV: "1" if multiprocessing else "0"}
    if on_cpu:
        settings[CPU_KV_SPACE_ENV] = None  # else it would override kv_cache_memory_bytes
    return settings


@contextmanager
def scoped_environment(settings: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) `settings` in os.environ for the block; restore them after.

    vLLM's cached environment reads are cleared first, so the engine started in the block
    reads these values and not those of an engine started earlier in the process.
    """
    saved = {name: os.environ.get(name) for name in settings}
    _apply(settings)
    try:
        _forget_vllm_env_cache()
        yield
    finally:
        _apply(saved)


def _apply(settings: Mapping[str, str | None]) -> None:
    for name, value in settings.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _forget_vllm_env_cache() -> None:
    envs = sys.modules.get("vllm.envs")  # not imported yet: nothing is cached
    if envs is not None:
        envs.disable_envs_cache()
