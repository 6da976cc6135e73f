"""The warm-up runs first, ends once enough of it finished, then hands over to the policy its
owner makes of what it measured; the owner's step does that at the same event."""

from __future__ import annotations

import pytest

from blend.admission.base import InOrderAdmission
from blend.admission.warmup import WarmupOutcome, WarmupThenRest, hand_over_if_ended
from tests.support.fake_view import FakeView


def test_the_warmup_ends_once_with_what_it_measured_and_waits_for_its_owner() -> None:
    outcomes: list[WarmupOutcome] = []
    rest = InOrderAdmission([10, 11, 12], window=8)

    def rest_of_run(outcome: WarmupOutcome) -> InOrderAdmission:
        outcomes.append(outcome)
        return rest

    policy = WarmupThenRest([0, 1, 2, 3], n_rest=3, window=8, done_fraction=0.75)
    assert policy.admit(FakeView()) == [0, 1, 2, 3]
    assert policy.num_remaining == 3
    # two of four done: not yet (needs 3)
    assert policy.admit(FakeView(step=5, finished=[(0, 7), (1, 9)], num_running=2)) == []
    assert not policy.awaiting_rest and not hand_over_if_ended(policy, rest_of_run)
    view = FakeView(step=9, finished=[(2, 4)], num_running=1, generated={3: 30})
    assert policy.admit(view) == []  # ended: nothing until the owner acts
    assert policy.awaiting_rest and policy.replanned_at_step == 9
    assert policy.outcome == WarmupOutcome(finished={0: 7, 1: 9, 2: 4}, running={3: 30}, step=9)
    assert policy.admit(FakeView(step=9, num_running=1)) == []  # still waiting
    # the owner's step: re-plan (rest_of_run) and hand over, once
    assert hand_over_if_ended(policy, rest_of_run)
    assert not hand_over_if_ended(policy, rest_of_run) and len(outcomes) == 1
    assert policy.admit(FakeView(step=9, num_running=1)) == [10, 11, 12]  # the rest at once
    # the last warm-up request finishing is not the rest's business
    assert policy.admit(FakeView(step=20, finished=[(3, 41)])) == []
    assert rest._inflight == 3  # it never heard of request 3
    assert policy.measured[3] == 41
    assert policy.admit(FakeView(step=30, finished=[(10, 1)])) == []
    assert rest._inflight == 2


def test_an_idle_engine_ends_the_warmup_early() -> None:
    policy = WarmupThenRest([0, 1], n_rest=1, done_fraction=1.0)
    assert policy.admit(FakeView()) == [0, 1]
    assert policy.admit(FakeView(step=3, finished=[(0, 2)], num_running=1)) == []
    assert not policy.awaiting_rest
    assert policy.admit(FakeView(step=4, finished=[(1, 2)])) == []  # all done: idle engine
    assert policy.awaiting_rest
    assert hand_over_if_ended(policy, lambda outcome: InOrderAdmission([5], window=2))
    assert policy.admit(FakeView(step=4)) == [5]


def test_a_window_bounds_the_warmup_in_flight() -> None:
    policy = WarmupThenRest(list(range(5)), n_rest=0, window=2)
    assert policy.admit(FakeView()) == [0, 1]
    assert policy.admit(FakeView(finished=[(0, 1)], num_running=1)) == [2]


def test_handing_over_before_the_warmup_ended_is_refused() -> None:
    policy = WarmupThenRest([0, 1], n_rest=1)
    with pytest.raises(RuntimeError, match="has not ended"):
        policy.hand_over(InOrderAdmission([5], window=2))
