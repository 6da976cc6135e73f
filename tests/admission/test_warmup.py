"""The warm-up runs first, re-plans once when enough of it finished, then hands over."""

from __future__ import annotations

from blend.admission.base import InOrderAdmission
from blend.admission.warmup import WarmupOutcome, WarmupThenReplan
from tests.support.fake_view import FakeView


def test_warmup_then_replan_once_with_what_it_measured() -> None:
    outcomes: list[WarmupOutcome] = []
    rest = InOrderAdmission([10, 11, 12], window=8)

    def replan(outcome: WarmupOutcome) -> InOrderAdmission:
        outcomes.append(outcome)
        return rest

    policy = WarmupThenReplan([0, 1, 2, 3], replan, n_rest=3, window=8, done_fraction=0.75)
    assert policy.admit(FakeView()) == [0, 1, 2, 3]
    assert policy.num_remaining == 3
    # two of four done: not yet (needs 3)
    assert policy.admit(FakeView(step=5, finished=[(0, 7), (1, 9)], num_running=2)) == []
    assert not outcomes
    view = FakeView(step=9, finished=[(2, 4)], num_running=1, generated={3: 30})
    assert policy.admit(view) == [10, 11, 12]  # re-planned: the rest starts at once
    assert outcomes == [WarmupOutcome(finished={0: 7, 1: 9, 2: 4}, running={3: 30}, step=9)]
    assert policy.replanned_at_step == 9
    # the last warm-up request finishing is not the re-planned policy's business
    assert policy.admit(FakeView(step=20, finished=[(3, 41)])) == []
    assert rest._inflight == 3  # it never heard of request 3
    assert policy.measured[3] == 41
    assert policy.admit(FakeView(step=30, finished=[(10, 1)])) == []
    assert rest._inflight == 2
    assert len(outcomes) == 1


def test_an_idle_engine_ends_the_warmup_early() -> None:
    policy = WarmupThenReplan(
        [0, 1], lambda outcome: InOrderAdmission([5], window=2), n_rest=1, done_fraction=1.0
    )
    assert policy.admit(FakeView()) == [0, 1]
    assert policy.admit(FakeView(step=3, finished=[(0, 2)], num_running=1)) == []
    assert policy.admit(FakeView(step=4, finished=[(1, 2)])) == [5]  # all done: idle engine


def test_a_window_bounds_the_warmup_in_flight() -> None:
    policy = WarmupThenReplan(
        list(range(5)), lambda o: InOrderAdmission([], window=1), n_rest=0, window=2
    )
    assert policy.admit(FakeView()) == [0, 1]
    assert policy.admit(FakeView(finished=[(0, 1)], num_running=1)) == [2]
