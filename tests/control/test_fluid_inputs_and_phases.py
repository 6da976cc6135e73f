"""Fluid inputs from the step model, and the offline LP sequence (phase plan)."""

from __future__ import annotations

import numpy as np
import pytest

from blend.control.classes import RequestClass
from blend.control.fluid_inputs import fluid_inputs, typical_request
from blend.control.fluid_lp import FluidParams, solve_fluid_lp
from blend.control.phase_plan import class_specs, fluid_min_makespan_s, phase_plan
from blend.cost.model import CostModel, load_hardware, load_model_spec
from blend.cost.step_time import step_time_s
from blend.engines.settings import EngineSettings

COST = CostModel(load_model_spec("llama-3.1-8b"), load_hardware("h200"))
PAPER = FluidParams(
    alpha_s=0.0174, beta_s_per_token=6.2e-5, gamma_tok_s=45.45, slots=16, chunk_tokens=256
)
DOLLY = [  # P, D, requests (the Dolly-15k class means)
    (61, 331, 1766), (123, 142, 2136), (992, 182, 1773), (89, 915, 709),
    (69, 572, 2191), (1139, 273, 1506), (45, 293, 3742), (1177, 436, 1188),
]  # fmt: skip


def dolly_classes() -> list[RequestClass]:
    return [RequestClass(i, n, p, d) for i, (p, d, n) in enumerate(DOLLY)]


def test_inputs_follow_the_step_model() -> None:
    settings = EngineSettings(4096, 64)
    inputs = fluid_inputs(COST, settings, 400.0, 300.0)
    params = inputs.params
    assert params.slots == 64 and params.chunk_tokens == 4096 - 63
    context = 400.0 + 150.0
    solo = step_time_s(COST, 0, 64, 64 * (context + 2.0))
    assert params.gamma_tok_s == pytest.approx(1.0 / solo)
    # the mixed-step line reproduces the full-chunk step within the fit's error
    full = step_time_s(COST, params.chunk_tokens, 63, 63 * (context + 2.0))
    assert params.tau_mixed_s == pytest.approx(full, rel=0.05)
    assert params.tau_mixed_s > params.tau_solo_s  # a chunk of 4k tokens costs more than decodes
    assert inputs.fit_rms_rel < 0.05


def test_slots_are_capped_by_kv_memory() -> None:
    inputs = fluid_inputs(COST, EngineSettings(16384, 1024), 4000.0, 2000.0, 100_000)
    assert inputs.kv_slots == 100_000 // 5000 == inputs.params.slots
    assert inputs.params.chunk_tokens == 16384 - 19


def test_bad_typical_request_is_refused() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        fluid_inputs(COST, EngineSettings(4096, 64), 0.0, 10.0)
    with pytest.raises(ValueError, match="no classes"):
        typical_request([])


def test_one_class_drains_at_the_lp_rate() -> None:
    only = [RequestClass(0, 1000, 300.0, 1000.0)]
    plan = phase_plan(only, PAPER)
    rate = solve_fluid_lp(class_specs(only), PAPER, saturated=True).completion_rate[0]
    assert len(plan.phases) == 1
    assert plan.makespan_s == pytest.approx(1000 / rate)
    assert phase_plan(only, PAPER, n_engines=4).makespan_s == pytest.approx(plan.makespan_s / 4)


def test_phases_drain_every_request_once() -> None:
    classes = dolly_classes()
    plan = phase_plan(classes, PAPER)
    assert 1 <= len(plan.phases) <= len(classes)
    done = sum(p.completion_rate * p.duration_s for p in plan.phases)
    assert np.allclose(done, [c.n_requests for c in classes], rtol=1e-6)
    drained = [i for p in plan.phases for i in p.drained]
    assert sorted(drained) == list(range(len(classes)))  # each class drains exactly once
    for phase in plan.phases:  # a phase's LP never sees a class that drained before it
        assert all(phase.remaining_before[i] > 0 for i in phase.active)
    # the greedy sequence is never better than the fluid model's own optimum
    assert fluid_min_makespan_s(classes, PAPER) <= plan.makespan_s * (1 + 1e-6)


def test_phase_plan_refuses_bad_ids_and_engines() -> None:
    with pytest.raises(ValueError, match="class ids"):
        phase_plan([RequestClass(3, 10, 10.0, 10.0)], PAPER)
    with pytest.raises(ValueError, match="n_engines"):
        phase_plan(dolly_classes(), PAPER, n_engines=0)
