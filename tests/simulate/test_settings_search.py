"""The search of feed and engine settings: lengths drawn from the estimates (never the true
ones), every feed tried, the fastest kept."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy.special import ndtri

from bench.workloads.families import draw_instance
from bench.workloads.generators import default_cost
from blend.engines.settings import TOKEN_CANDIDATES, EngineSettings
from blend.planners import make_planner
from blend.planners.base import AdmissionKind
from blend.planners.simple import LptPlanner
from blend.simulate import SimConfig
from blend.simulate.pipeline import PipelineSimulator, SimulatedEngine
from blend.simulate.run import search_after_warmup
from blend.simulate.settings_search import (
    GUARDS,
    MIN_RESIDUALS,
    FeedChoice,
    Guard,
    SearchInputs,
    guard_order,
    sample_lengths,
    search_plan,
)


def test_point_estimates_are_drawn_as_they_are() -> None:
    lengths = sample_lengths(np.array([3.0, 40.0]), np.zeros(2), np.array([100, 20]), seed=0)
    assert lengths.tolist() == [3, 20]  # clipped to max_tokens


def test_a_group_always_holds_its_share_of_the_upper_tail() -> None:
    """Stratified: of 20 requests with the same guess, one lands in each 5% slice, so the
    longest is at least the 95th percentile, for every seed."""
    mean, sigma = 7400.0, 1.9
    q95 = math.exp(math.log(mean) - sigma**2 / 2 + sigma * ndtri(0.95))
    for seed in range(20):
        drawn = sample_lengths(np.full(20, mean), np.full(20, sigma), np.full(20, 10**7), seed)
        assert drawn.max() >= q95 - 1
        assert np.sort(drawn)[0] <= math.exp(math.log(mean) - sigma**2 / 2 + sigma * ndtri(0.05))


def test_measured_shapes_are_drawn_with_the_estimate_as_their_mean() -> None:
    """A bimodal shape (lengths at 1/2 and 2 times the group's geometric mean) stays bimodal,
    and the drawn mean is the estimate; guesses keep the lognormal of their prior."""
    shape = np.log(np.tile([0.5, 2.0], MIN_RESIDUALS))
    n = 4000
    drawn = sample_lengths(
        np.full(n, 500.0), np.full(n, 0.7), np.full(n, 10**6), 1, residuals=shape
    )
    assert set(np.unique(drawn).tolist()) <= set(range(195, 205)) | set(range(795, 805))
    assert drawn.mean() == pytest.approx(500.0, rel=0.01)
    guessed = np.ones(n, dtype=bool)
    wide = sample_lengths(np.full(n, 500.0), np.full(n, 0.7), np.full(n, 10**6), 1, shape, guessed)
    assert len(np.unique(wide)) > 100  # the lognormal, not the two modes
    few = sample_lengths(np.full(n, 500.0), np.full(n, 0.7), np.full(n, 10**6), 1, shape[:4])
    assert len(np.unique(few)) > 100  # too few measurements: the lognormal


def _planned(planner: str):
    workload = draw_instance("chat-reasoning", 600, 1).workload
    cost = default_cost()
    simulator = PipelineSimulator(
        workload, make_planner(planner, cost=cost), cost, engine=SimulatedEngine(_DEFAULT)
    )
    return simulator, simulator.run(_DEFAULT), cost


_DEFAULT = EngineSettings(8192, 256)


def test_the_dual_scan_search_tries_every_feed_and_keeps_the_fastest() -> None:
    simulator, first, cost = _planned("blendserve")
    search = search_after_warmup(simulator, first, cost)
    feeds = {t.feed for t in search.trials}
    assert feeds == {
        FeedChoice(AdmissionKind.DUAL_SCAN),
        FeedChoice(AdmissionKind.DUAL_SCAN, pace=False),
        *(FeedChoice(AdmissionKind.IN_ORDER, guard=g) for g in GUARDS),
    }
    assert search.best.makespan_s == min(t.makespan_s for t in search.trials)
    assert search.trials[0].settings == _DEFAULT  # the running settings first
    # one throttle: pacing runs only at the running and the largest budget
    paced = [t for t in search.trials if t.feed == FeedChoice(AdmissionKind.DUAL_SCAN)]
    assert {t.settings.max_num_batched_tokens for t in paced} == {8192, max(TOKEN_CANDIDATES)}
    unpaced = {t.settings.max_num_batched_tokens for t in search.trials if not t.feed.pace}
    assert {256, 512, 1024, 2048, 4096, 16384} <= unpaced


def test_the_longest_first_guard_feeds_lpts_order_of_the_estimates() -> None:
    """The guard in lpt's order is lpt's plan of the same requests from the same estimates
    (never the true lengths), and the pipeline feeds the rest in exactly that order."""
    simulator, first, _ = _planned("blendserve")
    planned = first.planned
    prompts = [simulator.workload.requests[i].prompt_token_ids for i in planned.ordered]
    feed = FeedChoice(AdmissionKind.IN_ORDER, guard=Guard.LONGEST_FIRST)
    guarded = guard_order(feed, prompts, planned.ordered_estimates)
    assert guarded is not None and guard_order(FeedChoice(AdmissionKind.DUAL_SCAN), [], []) is None
    rest = [simulator.workload.requests[i] for i in planned.rest]
    lpt = LptPlanner().plan(simulator._rest_visible, planned.estimates)  # what it may see
    assert planned.ordered[guarded].tolist() == planned.rest[lpt.order].tolist()
    true = np.array([r.output_len for r in rest])[np.asarray(planned.plan.order)][guarded]
    assert not np.all(np.diff(true) <= 0)  # not the true lengths' order
    run = simulator.run(_DEFAULT, feed)
    fed = run.result.admission_order.tolist()[-len(guarded) :]
    assert fed == planned.ordered[guarded].tolist()
    assert run.feed.label() == "in-order (longest-first fallback)"


def test_the_search_of_an_in_order_plan_varies_only_the_settings() -> None:
    simulator, first, cost = _planned("dfs")
    search = search_after_warmup(simulator, first, cost)
    assert {t.feed for t in search.trials} == {FeedChoice(AdmissionKind.IN_ORDER)}
    assert len(search.trials) <= len(TOKEN_CANDIDATES) + 2


def test_the_search_sees_estimates_only() -> None:
    """The same estimates give the same predictions whatever the true lengths are: the
    search's inputs have no field for them."""
    prompts = [list(range(i, i + 30)) for i in range(50)]
    estimates = np.full(50, 80.0)
    inputs = SearchInputs(
        prompts, estimates, np.full(50, 0.5), np.full(50, 512), AdmissionKind.IN_ORDER
    )
    config = SimConfig(kv_capacity_tokens=20_000, block_size=16)
    one = search_plan(inputs, default_cost(), _DEFAULT, config, max_model_len=1024)
    two = search_plan(inputs, default_cost(), _DEFAULT, config, max_model_len=1024)
    assert [t.makespan_s for t in one.trials] == [t.makespan_s for t in two.trials]
    assert "output_len" not in SearchInputs.__dataclass_fields__


def test_a_sample_stands_for_a_large_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    from blend.simulate import settings_search

    monkeypatch.setattr(settings_search, "SEARCH_MAX_REQUESTS", 25)
    prompts = [list(range(i, i + 30)) for i in range(100)]
    inputs = SearchInputs(
        prompts, np.full(100, 20.0), np.zeros(100), np.full(100, 64), AdmissionKind.IN_ORDER
    )
    config = SimConfig(kv_capacity_tokens=20_000, block_size=16)
    search = search_plan(inputs, default_cost(), _DEFAULT, config, max_model_len=1024)
    assert search.n_simulated == 25 and search.n_requests == 100


def test_candidates_simulated_in_worker_processes_give_the_same_search() -> None:
    """The pool changes where candidates run, not what they predict: trial for trial the
    same settings, feeds, makespans and preemptions, and the same winner."""
    simulator, first, _ = _planned("blendserve")
    planned, running = first.planned, first.settings
    serial = simulator.search(planned, running, memory_centric=300, max_model_len=4096)
    simulator.search_workers = 2
    pooled = simulator.search(planned, running, memory_centric=300, max_model_len=4096)
    assert pooled.trials == serial.trials and pooled.best == serial.best
    assert len(serial.trials) > 2  # a first round in the pool, then the memory-centric one


def test_small_searches_stay_in_process_and_large_ones_use_the_cores() -> None:
    from blend.simulate.settings_search import PARALLEL_MIN_REQUESTS, search_workers

    assert search_workers(PARALLEL_MIN_REQUESTS - 1, 17) == 1
    assert search_workers(PARALLEL_MIN_REQUESTS, 1) == 1
    cores = len(os.sched_getaffinity(0))
    assert search_workers(PARALLEL_MIN_REQUESTS, 17) == min(17, cores)


def test_an_in_order_feed_predicted_to_preempt_wins_only_when_nothing_else_is_left() -> None:
    from blend.simulate.settings_search import PREEMPTION_LIMIT, SearchTrial, choose_trial

    in_order, dual_scan = FeedChoice(AdmissionKind.IN_ORDER), FeedChoice(AdmissionKind.DUAL_SCAN)
    n = 1000
    allowed = int(PREEMPTION_LIMIT * n)

    def trial(feed: FeedChoice, makespan: float, preemptions: int) -> SearchTrial:
        return SearchTrial(EngineSettings(512, 64), feed, makespan, preemptions)

    calm, thrashing = trial(in_order, 110.0, allowed), trial(in_order, 100.0, allowed + 1)
    assert choose_trial([thrashing, calm], n) is calm
    worse = trial(in_order, 105.0, 5 * allowed)
    assert choose_trial([worse, thrashing], n) is thrashing  # nothing else: the fastest
    # the dual scan's projection adapts online: its predicted preemptions do not exclude it
    scan = trial(dual_scan, 100.0, 5 * allowed)
    assert choose_trial([calm, scan], n) is scan


def test_a_half_sample_picks_what_the_whole_plan_picks() -> None:
    """With the sample's threshold lowered to half the plan, the search chooses the same
    settings and feed as the search of every request (its predicted makespan, scaled by
    n / sample, is rougher: docs/planners.md)."""
    rng = np.random.default_rng(5)
    heads = [rng.integers(0, 30_000, int(rng.integers(100, 400))).tolist() for _ in range(12)]
    group = rng.integers(0, 12, 1200)
    prompts = [heads[g] + rng.integers(0, 30_000, 30).tolist() for g in group.tolist()]
    estimates = np.asarray([40.0, 900.0, 150.0] * 4)[group]
    inputs = SearchInputs(
        prompts, estimates, np.full(1200, 0.6), np.full(1200, 4096), AdmissionKind.IN_ORDER
    )
    config = SimConfig(kv_capacity_tokens=60_000, block_size=16)
    full = search_plan(inputs, default_cost(), _DEFAULT, config, max_model_len=8192)
    half = search_plan(
        inputs, default_cost(), _DEFAULT, config, max_model_len=8192, max_simulated=600
    )
    assert (full.n_simulated, half.n_simulated) == (1200, 600)
    assert (half.best.settings, half.best.feed) == (full.best.settings, full.best.feed)
