from __future__ import annotations

import pytest

from blend.cost.model import load_model_spec
from blend.cost.offload.hardware_profile import HeteGenProfile
from blend.cost.offload.layer_costs import step_costs, thirty_b_on_24gb, weight_budget_bytes
from blend.cost.offload.shapes import non_linear_weight_bytes


def test_the_budget_leaves_room_for_kv_and_the_other_weights() -> None:
    spec = load_model_spec("llama-3.1-8b")
    fixed = 2**30 + non_linear_weight_bytes(spec)
    assert weight_budget_bytes(spec, 24e9, 1, 0, reserve_bytes=2**30) == int(24e9 - fixed)
    kv = 4 * 1000 * spec.kv_bytes_per_token
    assert weight_budget_bytes(spec, 24e9, 4, 1000, reserve_bytes=2**30) == int(24e9 - fixed - kv)


def test_hetegen_lies_between_streaming_and_all_resident(profile: HeteGenProfile) -> None:
    spec = load_model_spec("blend-tiny-llama")
    all_weights = 893568 * 2
    costs = step_costs(spec, profile, all_weights / 2, batch=1, context_tokens=64, reserve_bytes=0)
    assert costs["resident"].step_s < costs["hetegen"].step_s < costs["streaming"].step_s
    budget = weight_budget_bytes(spec, all_weights / 2, 1, 64, reserve_bytes=0)
    for strategy in ("hetegen", "streaming"):
        assert 0 < costs[strategy].resident_bytes <= budget
    assert 0 < costs["hetegen"].mean_alpha < 1 and costs["streaming"].mean_alpha == 0
    assert not costs["resident"].fits and costs["hetegen"].fits
    roomy = step_costs(spec, profile, 1e9, batch=1, context_tokens=64, reserve_bytes=0)
    assert roomy["hetegen"].step_s == pytest.approx(roomy["streaming"].step_s)
    assert roomy["resident"].fits


def test_thirty_b_on_24gb_hetegen_beats_streaming_until_the_kv_overflows() -> None:
    rows = thirty_b_on_24gb()
    assert [row.batch for row in rows] == [1, 2, 4, 8, 16, 32]
    for row in rows:
        assert row.speedup > 1.5
        assert not row.resident.fits  # 65 GB of weights
        assert row.hetegen.tokens_per_s == pytest.approx(row.batch / row.hetegen.step_s)
    resident = [row.hetegen.resident_bytes for row in rows]
    assert resident == sorted(resident, reverse=True) and resident[0] > 15 * 2**30
    assert rows[0].hetegen.fits and not rows[-1].hetegen.fits  # 32 x 576 tokens: 29 GB of KV


def test_a_measured_cpu_profile_changes_the_target(profile: HeteGenProfile) -> None:
    slow_cpu = thirty_b_on_24gb(profile, batches=(1,))[0]  # 1e9 weights/s: a slow CPU
    assumed = thirty_b_on_24gb(batches=(1,))[0]
    assert slow_cpu.speedup < assumed.speedup
    assert slow_cpu.streaming.step_s == pytest.approx(assumed.streaming.step_s)
