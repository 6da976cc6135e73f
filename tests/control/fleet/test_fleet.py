"""The fleet simulator: bookkeeping, the policies' mechanics, determinism, convergence."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from blend.control.fleet import (
    FleetConfig,
    FleetPolicyKind,
    Router,
    fcfs,
    gate_and_route,
    prioritize_and_route,
    simulate_fleet,
    sli_aware_routing,
)
from blend.control.fluid_lp import ClassSpec, LpVariant, SliConstraints, solve_fluid_lp
from tests.support.fleet_paper import PAPER, PAPER_PRICES, paper_classes

SHORT = FleetConfig(horizon_s=60.0, warmup_s=20.0, seed=3)


def all_policies(engines: int):
    classes = paper_classes()
    bundled = solve_fluid_lp(classes, PAPER, PAPER_PRICES)
    per_phase = solve_fluid_lp(classes, PAPER, PAPER_PRICES, LpVariant.PER_PHASE)
    sli = solve_fluid_lp(
        classes, PAPER, PAPER_PRICES, LpVariant.SLI_AWARE, SliConstraints(0.95, 0.03)
    )
    return [
        gate_and_route(bundled, engines),
        gate_and_route(bundled, engines, hold_while_buffered=True),
        prioritize_and_route(per_phase, engines),
        sli_aware_routing(sli, engines),
        fcfs(bundled, engines),
    ]


@pytest.mark.parametrize("policy", all_policies(6), ids=lambda p: p.kind)
def test_every_request_is_accounted_for(policy) -> None:
    # overloaded (2 requests/s per GPU per class): every queue and buffer is in play
    result = simulate_fleet(paper_classes(2.0), PAPER, PAPER_PRICES, policy, SHORT)
    for c in result.classes:
        assert c.arrived > 100
        assert c.completed > 0
        assert c.arrived == c.completed + c.abandoned_waiting + c.abandoned_buffered + c.in_system
        assert c.completed <= c.prefilled <= c.arrived


def test_the_gate_keeps_prefills_in_service_at_n_x_star() -> None:
    # overloaded (0.6 requests/s per GPU per class): the LP serves all of the long-prompt class
    # and 70% of the short-prompt one, which waits and abandons
    classes = paper_classes(0.6)
    lp = solve_fluid_lp(classes, PAPER, PAPER_PRICES)
    n, config = 50, FleetConfig(horizon_s=200.0, warmup_s=50.0, seed=1)
    result = simulate_fleet(classes, PAPER, PAPER_PRICES, gate_and_route(lp, n), config)
    for i, c in enumerate(result.classes):
        target = n * lp.x[i]
        assert abs(c.mean_prefilling - target) <= 1.0 + 0.05 * target, (c.name, target)
    served = lp.completion_rate / np.array([c.arrival_rate for c in classes])
    assert result.classes[0].served_fraction == pytest.approx(served[0], abs=0.1)
    # the priority gate admits the class with the larger D/P (short-prompt) first instead: it
    # hardly waits (and abandons) any more
    per_phase = solve_fluid_lp(classes, PAPER, PAPER_PRICES, LpVariant.PER_PHASE)
    priority = simulate_fleet(
        classes, PAPER, PAPER_PRICES, prioritize_and_route(per_phase, n), config
    )
    assert priority.classes[0].abandoned_waiting < result.classes[0].abandoned_waiting / 4
    assert priority.classes[1].abandoned_waiting > result.classes[1].abandoned_waiting


def test_mixed_engines_are_n_times_the_mixed_share_rounded_up(paper_lp) -> None:
    for n in (5, 20, 500):
        assert gate_and_route(paper_lp, n).mixed_engines == math.ceil(n * paper_lp.mixed_fraction)
    assert fcfs(paper_lp, 7).mixed_engines == 7


def test_the_router_fills_solo_engines_first(paper_lp) -> None:
    # light load: the solo engines have room for every decode, mixed ones get none
    light = simulate_fleet(
        paper_classes(0.05), PAPER, PAPER_PRICES, gate_and_route(paper_lp, 10), SHORT
    )
    assert light.trace.decoding_solo.max() > 0
    assert light.trace.decoding_mixed.max() == 0
    # overload: solo engines are full whenever a mixed engine decodes
    heavy = simulate_fleet(
        paper_classes(2.0), PAPER, PAPER_PRICES, gate_and_route(paper_lp, 10), SHORT
    )
    policy = gate_and_route(paper_lp, 10)
    solo_slots = (policy.engines - policy.mixed_engines) * PAPER.slots
    busy_mixed = heavy.trace.decoding_mixed > 0
    assert busy_mixed.any()
    assert (heavy.trace.decoding_solo[busy_mixed] >= solo_slots - 2).mean() > 0.9


def test_the_split_router_sends_decodes_to_the_pool_it_draws(paper_lp) -> None:
    policy = replace(gate_and_route(paper_lp, 8), router=Router.SPLIT, solo_probability=np.ones(2))
    result = simulate_fleet(paper_classes(1.0), PAPER, PAPER_PRICES, policy, SHORT)
    assert result.trace.decoding_mixed.max() == 0
    assert result.trace.decoding_solo.max() > 0


def test_fcfs_runs_every_engine_mixed_and_decodes_where_it_prefilled(paper_lp) -> None:
    n = 6
    result = simulate_fleet(paper_classes(1.0), PAPER, PAPER_PRICES, fcfs(paper_lp, n), SHORT)
    assert result.policy is FleetPolicyKind.FCFS
    assert result.mixed_engines == n
    assert result.trace.decoding_solo.max() == 0  # no solo engines
    assert result.trace.buffered.max() == 0  # no shared decode buffer
    # an engine holds at most B requests: decodes plus the one it prefills
    in_service = result.trace.decoding_mixed + result.trace.prefilling.sum(axis=1)
    assert in_service.max() <= n * PAPER.slots
    assert sum(c.completed for c in result.classes) > 0


def test_the_same_seed_gives_the_same_run(paper_lp) -> None:
    policy = gate_and_route(paper_lp, 8)
    first = simulate_fleet(paper_classes(), PAPER, PAPER_PRICES, policy, SHORT)
    again = simulate_fleet(paper_classes(), PAPER, PAPER_PRICES, policy, SHORT)
    other = simulate_fleet(paper_classes(), PAPER, PAPER_PRICES, policy, replace(SHORT, seed=4))
    assert first.classes == again.classes
    assert first.revenue_per_gpu_s == again.revenue_per_gpu_s
    np.testing.assert_array_equal(first.trace.waiting, again.trace.waiting)
    assert other.classes != first.classes


def test_gate_and_route_approaches_r_star_at_moderate_n(paper_lp) -> None:
    result = simulate_fleet(
        paper_classes(),
        PAPER,
        PAPER_PRICES,
        gate_and_route(paper_lp, 50),
        FleetConfig(horizon_s=300.0, warmup_s=100.0, seed=0),
    )
    r_star = paper_lp.revenue_per_gpu_s
    assert 0.92 * r_star <= result.revenue_per_gpu_s <= 1.02 * r_star


def test_holding_the_gate_keeps_the_decode_buffer_small(paper_lp) -> None:
    config = FleetConfig(horizon_s=200.0, warmup_s=60.0, seed=2)
    plain = simulate_fleet(
        paper_classes(), PAPER, PAPER_PRICES, gate_and_route(paper_lp, 40), config
    )
    held = simulate_fleet(
        paper_classes(),
        PAPER,
        PAPER_PRICES,
        gate_and_route(paper_lp, 40, hold_while_buffered=True),
        config,
    )
    assert held.mean_buffered < plain.mean_buffered / 3
    assert sum(c.abandoned_buffered for c in held.classes) < sum(
        c.abandoned_buffered for c in plain.classes
    )


def test_policies_need_the_right_lp(paper_lp) -> None:
    with pytest.raises(ValueError, match="per-phase"):
        prioritize_and_route(paper_lp, 10)
    with pytest.raises(ValueError, match="sli-aware"):
        sli_aware_routing(paper_lp, 10)
    saturated = solve_fluid_lp(paper_classes(), PAPER, PAPER_PRICES, saturated=True)
    with pytest.raises(ValueError, match="saturated"):
        gate_and_route(saturated, 10)


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="warmup_s"):
        FleetConfig(horizon_s=10.0, warmup_s=10.0)
    with pytest.raises(ValueError, match="sample_interval_s"):
        FleetConfig(horizon_s=10.0, warmup_s=0.0, sample_interval_s=0.0)


@pytest.mark.parametrize("make", [gate_and_route, fcfs], ids=["gate-and-route", "fcfs"])
def test_an_underloaded_fleet_serves_everything_and_earns_the_offered_value(make) -> None:
    # 0.1 requests/s per GPU per class: the LP serves everything
    classes = paper_classes(0.1)
    lp = solve_fluid_lp(classes, PAPER, PAPER_PRICES)
    assert lp.completion_rate == pytest.approx([0.1, 0.1])
    result = simulate_fleet(
        classes, PAPER, PAPER_PRICES, make(lp, 20), FleetConfig(horizon_s=400.0, warmup_s=100.0)
    )
    offered = sum(0.1 * (0.1 * c.prompt_tokens + 0.2 * c.output_tokens) for c in classes)
    assert result.revenue_per_gpu_s == pytest.approx(offered, rel=0.1)
    # FCFS has a prefill slot on every engine; Gate-and-Route's one mixed engine of 20
    # (ceil(n sum x*)) runs its prefill slot 86% busy, so some short prompts wait and abandon
    allowed = 0.01 if result.policy is FleetPolicyKind.FCFS else 0.1
    for c in result.classes:
        assert c.abandoned_waiting + c.abandoned_buffered <= allowed * c.arrived


def test_one_backlogged_mixed_engine_prefills_at_the_fluid_rate() -> None:
    # one class, far more arrivals than one engine can prefill, short decodes: completions are
    # the prefill slot's rate C / (P tau) (a finished prompt passes the rest of its chunk on),
    # and each decode token takes one mixed iteration tau
    classes = [ClassSpec("short", 300, 10, arrival_rate=100.0, abandonment=0.01)]
    lp = solve_fluid_lp(classes, PAPER, PAPER_PRICES)
    result = simulate_fleet(
        classes, PAPER, PAPER_PRICES, gate_and_route(lp, 1), FleetConfig(100.0, 20.0)
    )
    (outcome,) = result.classes
    assert outcome.completions_per_gpu_s == pytest.approx(PAPER.prefill_rate(300), rel=0.01)
    assert outcome.mean_tpot_s == pytest.approx(PAPER.tau_mixed_s, rel=1e-6)
