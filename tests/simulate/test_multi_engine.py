"""k simulated engines: one engine is the pipeline itself; every request runs exactly once."""

from __future__ import annotations

import numpy as np
import pytest

from bench.workloads.families import draw_instance
from bench.workloads.generators import default_cost
from blend.planners import make_planner
from blend.simulate.multi_engine import SPLITS, MultiEngineSimulator
from blend.simulate.pipeline import PipelineSimulator, SimulatedEngine
from blend.simulate.run import default_settings


@pytest.fixture(scope="module")
def dolly() -> MultiEngineSimulator:
    workload = draw_instance("dolly", 600, 3).workload
    cost = default_cost()
    return MultiEngineSimulator(
        workload, cost, SimulatedEngine(default_settings(workload, cost, True))
    )


def test_one_engine_is_the_single_engine_pipeline(dolly: MultiEngineSimulator) -> None:
    pipeline = PipelineSimulator(
        dolly.workload,
        make_planner("blendserve", cost=dolly.cost),
        dolly.cost,
        engine=dolly.engine,
    ).run(dolly.engine.settings)
    one = dolly.run(1)
    assert one.makespan_s == pytest.approx(pipeline.result.makespan_s, rel=1e-12)
    assert np.array_equal(one.shares[0].requests, pipeline.planned.ordered)


@pytest.mark.parametrize("split", SPLITS)
def test_every_request_runs_once_on_some_engine(dolly: MultiEngineSimulator, split: str) -> None:
    run = dolly.run(3, split)
    assert len(run.shares) == 3
    ran = np.concatenate([np.concatenate((s.warmup, s.requests)) for s in run.shares])
    assert np.array_equal(np.sort(ran), np.arange(len(dolly.workload.requests)))
    for share in run.shares:
        assert share.result is not None
        assert share.result.admission_order.size == len(share.warmup) + len(share.requests)
    assert run.makespan_s == max(s.makespan_s for s in run.shares)


def test_the_warmup_is_spread_over_the_engines(dolly: MultiEngineSimulator) -> None:
    run = dolly.run(2)
    sizes = [len(s.warmup) for s in run.shares]
    assert sum(sizes) == len(dolly.warmup) and max(sizes) - min(sizes) <= 1
    assert all(s.replanned_at_step is not None for s in run.shares)


def test_more_engines_finish_sooner(dolly: MultiEngineSimulator) -> None:
    """(600 requests: the longest one's decode keeps four engines from a 4x speed-up)"""
    one, four = dolly.run(1), dolly.run(4)
    assert four.makespan_s < 0.75 * one.makespan_s
    assert four.throughput_tok_s == pytest.approx(four.tokens / four.makespan_s)
    assert four.tokens == one.tokens


def test_unknown_split_is_named(dolly: MultiEngineSimulator) -> None:
    with pytest.raises(ValueError, match="unknown split 'halves'"):
        dolly.run(2, "halves")
