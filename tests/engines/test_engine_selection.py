"""`--engine auto`: hetegen when weights + KV reserve + reserve exceed the GPU's share."""

from __future__ import annotations

from pathlib import Path

import pytest

from blend.engines.base import EngineConfig
from blend.engines.selection import choose_engine, engine_choice, model_weight_bytes

GIB = 2**30


def test_auto_picks_hetegen_only_when_the_model_does_not_fit() -> None:
    fits = choose_engine("auto", 14 * GIB, 80 * GIB, 0.9, 4 * GIB, reserve_bytes=GIB)
    assert fits.engine == "vllm" and "fits" in fits.reason
    too_big = choose_engine("auto", 65 * GIB, 24 * GIB, 0.9, 4 * GIB, reserve_bytes=GIB)
    assert too_big.engine == "hetegen"
    # the KV reserve alone tips it: 20 + 1 + 1 = 22 > 24 x 0.9 = 21.6
    edge = choose_engine("auto", 20 * GIB, 24 * GIB, 0.9, 1 * GIB, reserve_bytes=GIB)
    assert edge.engine == "hetegen"
    assert choose_engine("auto", 20 * GIB, 24 * GIB, 1.0, 1 * GIB, GIB).engine == "vllm"


def test_without_a_gpu_auto_keeps_vllm_and_explicit_choices_win() -> None:
    assert choose_engine("auto", 65 * GIB, None, 0.9, GIB).engine == "vllm"
    assert choose_engine("hetegen", 1.0, 80 * GIB, 0.9, GIB).engine == "hetegen"
    assert choose_engine("vllm", 65 * GIB, 24 * GIB, 0.9, GIB).engine == "vllm"
    with pytest.raises(ValueError, match="engine 'tgi'"):
        choose_engine("tgi", 1.0, None, 0.9, GIB)


def test_the_choice_for_a_model_folder_reads_its_weight_files(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = model_weight_bytes(tiny_model)
    assert size > 0
    import blend.engines.selection as selection

    config = EngineConfig(model_dir=tiny_model, gpu_memory_utilization=1.0, kv_cache_gib=0.0)
    monkeypatch.setattr(selection, "DEFAULT_RESERVE_BYTES", 0)
    monkeypatch.setattr(selection, "local_gpu_mem_bytes", lambda: float(size - 1))
    assert engine_choice(config).engine == "hetegen"
    monkeypatch.setattr(selection, "local_gpu_mem_bytes", lambda: float(size + 1))
    assert engine_choice(config).engine == "vllm"


def test_the_flows_engine_options_carry_the_choice(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from flows.options import EngineOptions

    assert EngineOptions().engine_config(tmp_path).engine == "auto"
    assert EngineOptions(engine="hetegen").engine_config(tmp_path).engine == "hetegen"
    with pytest.raises(ValidationError):
        EngineOptions(engine="tgi")  # type: ignore[arg-type]


def test_vllm_gets_the_configs_cpu_offload(tmp_path: Path) -> None:
    from blend.engines.vllm_args import engine_kwargs

    config = EngineConfig(model_dir=tmp_path, cpu_offload_gb=2.5)
    assert engine_kwargs(config, on_cpu=False, show_load_progress=False)["cpu_offload_gb"] == 2.5
    default = EngineConfig(model_dir=tmp_path)
    assert engine_kwargs(default, on_cpu=False, show_load_progress=False)["cpu_offload_gb"] == 0.0
