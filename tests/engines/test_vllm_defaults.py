"""The engine settings blend assumes are the ones vLLM configures, and the state it reports.

vllm_default_settings (what plans start with and `blend simulate` simulates by default) must
be vLLM 0.32's own offline defaults: checked against vLLM's table for each GPU spec, and
against a real CPU engine started with no budgets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest

from blend.cost.model import load_hardware
from blend.engines.base import EngineConfig, EngineOutput, EngineRequest, EngineState
from blend.engines.feeds import OrderedFeed
from blend.engines.settings import vllm_default_settings

GPU_NAMES = {
    "a100-80g": "NVIDIA A100-SXM4-80GB",
    "h100-80g": "NVIDIA H100 80GB HBM3",
    "h200": "NVIDIA H200",
}


@pytest.mark.parametrize("hardware", sorted(GPU_NAMES))
def test_gpu_defaults_are_vllms_offline_table(
    hardware: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vllm.engine.arg_utils import EngineArgs
    from vllm.platforms import current_platform
    from vllm.usage.usage_lib import UsageContext

    spec = load_hardware(hardware)
    monkeypatch.setattr(current_platform, "is_cpu", lambda: False)
    monkeypatch.setattr(current_platform, "is_tpu", lambda: False)
    monkeypatch.setattr(current_platform, "get_device_name", lambda *a: GPU_NAMES[hardware])
    monkeypatch.setattr(current_platform, "get_device_total_memory", lambda *a: spec.mem_bytes)
    tokens, seqs = EngineArgs.get_batch_defaults(world_size=1)
    ours = vllm_default_settings(spec, max_model_len=8192)
    assert (ours.max_num_batched_tokens, ours.max_num_seqs) == (
        tokens[UsageContext.LLM_CLASS],
        seqs[UsageContext.LLM_CLASS],
    )


@pytest.mark.engine
def test_cpu_engine_runs_with_the_defaults_blend_assumes_and_reports_its_state(
    tiny_model: Path,
) -> None:
    from blend.engines.vllm_engine import VllmEngine

    engine = VllmEngine(EngineConfig(model_dir=tiny_model))
    try:
        expected = vllm_default_settings(
            load_hardware("cpu-local"), max_model_len=engine.max_model_len
        )
        assert engine.settings == expected
        before = engine.state()
        assert before.kv_blocks_total > 0 and before.block_size == 128
        prompt = list(range(10, 300))
        requests = [
            EngineRequest(f"r{i}", prompt, {"max_tokens": 6, "min_tokens": 6, "temperature": 0})
            for i in range(3)
        ]
        states, finished = [], []
        for outputs in engine.generate(_Watching(OrderedFeed(requests), states)):
            finished += outputs
        assert {o.request_id for o in finished} == {"r0", "r1", "r2"}
        assert max(s.num_running for s in states) == 3
        assert max(s.kv_blocks_used for s in states) >= 3  # 290 prompt tokens: 3 blocks each
        assert max(max(s.generated.values(), default=0) for s in states) >= 1
        assert engine.state().step == len(states) - 1
    finally:
        engine.close()


class _Watching:
    """A feed that records a copy of every engine state it is shown."""

    def __init__(self, inner: OrderedFeed, states: list[EngineState]) -> None:
        self._inner, self._states = inner, states

    @property
    def exhausted(self) -> bool:
        return self._inner.exhausted

    @property
    def paused(self) -> bool:
        return False

    def take(self, state: EngineState, finished: Sequence[EngineOutput]) -> list[EngineRequest]:
        self._states.append(dataclasses.replace(state, generated=dict(state.generated)))
        return self._inner.take(state, finished)
