"""What VllmEngine hands vLLM: per-engine arguments, and environment settings that are set
only while an engine starts (so a second engine in the process is not started with the
first one's)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blend.engines.base import EngineConfig
from blend.engines.vllm_args import (
    CPU_KV_SPACE_ENV,
    MULTIPROCESSING_ENV,
    engine_environment,
    engine_kwargs,
    scoped_environment,
)


def test_two_configs_get_their_own_kv_size(tiny_model: Path) -> None:
    small = engine_kwargs(
        EngineConfig(model_dir=tiny_model, kv_cache_gib=0.25), on_cpu=True, show_load_progress=False
    )
    large = engine_kwargs(
        EngineConfig(model_dir=tiny_model, kv_cache_gib=2.0), on_cpu=True, show_load_progress=False
    )
    assert small["kv_cache_memory_bytes"] == 2**28
    assert large["kv_cache_memory_bytes"] == 2**31


def test_gpu_arguments_leave_kv_size_and_chunked_prefill_to_vllm(tiny_model: Path) -> None:
    kwargs = engine_kwargs(
        EngineConfig(model_dir=tiny_model, max_num_batched_tokens=64),
        on_cpu=False,
        show_load_progress=True,
    )
    assert "kv_cache_memory_bytes" not in kwargs
    assert "enable_chunked_prefill" not in kwargs
    assert kwargs["max_num_batched_tokens"] == 64
    assert kwargs["use_tqdm_on_load"] is True


def test_cpu_budget_is_raised_to_a_whole_prompt(tiny_model: Path) -> None:
    kwargs = engine_kwargs(
        EngineConfig(model_dir=tiny_model, max_num_batched_tokens=64, max_model_len=512),
        on_cpu=True,
        show_load_progress=False,
    )
    assert kwargs["enable_chunked_prefill"] is False
    assert kwargs["max_num_batched_tokens"] == 512


def test_environment_follows_each_config(tiny_model: Path) -> None:
    in_process = EngineConfig(model_dir=tiny_model, multiprocessing=False)
    own_process = EngineConfig(model_dir=tiny_model, multiprocessing=True)
    default = EngineConfig(model_dir=tiny_model)
    assert engine_environment(in_process, on_cpu=True)[MULTIPROCESSING_ENV] == "0"
    assert engine_environment(own_process, on_cpu=True)[MULTIPROCESSING_ENV] == "1"
    assert engine_environment(default, on_cpu=True)[MULTIPROCESSING_ENV] == "0"
    assert engine_environment(default, on_cpu=False)[MULTIPROCESSING_ENV] == "1"
    # the legacy CPU variable would override the config's kv_cache_gib: unset while starting
    assert engine_environment(default, on_cpu=True)[CPU_KV_SPACE_ENV] is None
    assert CPU_KV_SPACE_ENV not in engine_environment(default, on_cpu=False)


def test_scoped_environment_sets_then_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CPU_KV_SPACE_ENV, "7")
    monkeypatch.delenv(MULTIPROCESSING_ENV, raising=False)
    with scoped_environment({MULTIPROCESSING_ENV: "0", CPU_KV_SPACE_ENV: None}):
        assert os.environ[MULTIPROCESSING_ENV] == "0"
        assert CPU_KV_SPACE_ENV not in os.environ
    assert os.environ[CPU_KV_SPACE_ENV] == "7"
    assert MULTIPROCESSING_ENV not in os.environ


def test_scoped_environment_restores_when_the_start_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MULTIPROCESSING_ENV, "1")
    with pytest.raises(RuntimeError), scoped_environment({MULTIPROCESSING_ENV: "0"}):
        raise RuntimeError("engine failed to start")
    assert os.environ[MULTIPROCESSING_ENV] == "1"


def test_scoped_environment_clears_vllms_cached_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    import vllm.envs as envs

    monkeypatch.setenv(MULTIPROCESSING_ENV, "1")
    envs.enable_envs_cache()  # as a started engine leaves it
    try:
        with scoped_environment({MULTIPROCESSING_ENV: "0"}):
            assert envs.VLLM_ENABLE_V1_MULTIPROCESSING is False
    finally:
        envs.disable_envs_cache()


@pytest.mark.engine
def test_two_engines_in_one_process_get_their_own_kv_cache(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from blend.engines.vllm_engine import VllmEngine

    monkeypatch.setenv(CPU_KV_SPACE_ENV, "1")  # a stray legacy setting must not win
    multiprocessing_before = os.environ.get(MULTIPROCESSING_ENV)
    blocks = []
    for gib in (0.125, 0.25):
        engine = VllmEngine(EngineConfig(model_dir=tiny_model, kv_cache_gib=gib))
        try:
            blocks.append(engine.state().kv_blocks_total)
        finally:
            engine.close()
    assert blocks[1] == pytest.approx(2 * blocks[0], rel=0.05)
    assert os.environ[CPU_KV_SPACE_ENV] == "1"
    assert os.environ.get(MULTIPROCESSING_ENV) == multiprocessing_before
