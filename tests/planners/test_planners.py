import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from blend.planners import Plan, PlannerName, PlanRequest, make_planner
from blend.planners.tree import RadixTree, order_sharing_ratio


def requests_of(prompts: list[list[int]]) -> list[PlanRequest]:
    return [PlanRequest(f"r{i}", p, 8) for i, p in enumerate(prompts)]


PROMPTS = [[9, 9], [1, 2, 3], [4], [1, 2, 4], [9, 9, 9]]


def test_fcfs_keeps_input_order_and_batches() -> None:
    plan = make_planner("fcfs", batch_size=2).plan(requests_of(PROMPTS))
    assert plan.order.tolist() == [0, 1, 2, 3, 4]
    assert plan.batches.tolist() == [0, 0, 1, 1, 2]
    assert plan.sides.tolist() == [None] * 5


def test_dfs_orders_by_prefix_tree() -> None:
    plan = make_planner("dfs").plan(requests_of(PROMPTS))
    assert plan.order.tolist() == [1, 3, 2, 0, 4]


def test_lpt_starts_the_longest_estimates_first_ties_in_dfs_order() -> None:
    requests = [
        PlanRequest("a", [5, 1], 100, 10),
        PlanRequest("b", [1, 2], 100, 50),
        PlanRequest("c", [1, 1], 100, 50),
        PlanRequest("d", [3], 100, 5),
    ]
    planner = make_planner("lpt")
    assert planner.uses_lengths and planner.name is PlannerName.LPT
    # c, b (50: [1, 1] < [1, 2]), a, d
    assert planner.plan(requests).order.tolist() == [2, 1, 0, 3]
    # no lengths known: every estimate is max_tokens, so the order is DFS's
    unknown = [PlanRequest(r.request_id, r.prompt_token_ids, 100) for r in requests]
    assert np.array_equal(planner.plan(unknown).order, make_planner("dfs").plan(unknown).order)


def test_random_is_seeded() -> None:
    a = make_planner("random", seed=1).plan(requests_of(PROMPTS * 4)).order.tolist()
    b = make_planner("random", seed=1).plan(requests_of(PROMPTS * 4)).order.tolist()
    c = make_planner("random", seed=2).plan(requests_of(PROMPTS * 4)).order.tolist()
    assert a == b
    assert a != c


def test_unknown_planner_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"Unknown planner: 'nope' \(known: fcfs, random, dfs"):
        make_planner("nope")


def test_plan_rejects_non_permutation() -> None:
    with pytest.raises(ValueError, match="not a permutation"):
        Plan(PlannerName.FCFS, order=[0, 0], batches=[0, 0], sides=[None, None])


@given(
    st.lists(st.lists(st.integers(0, 4), max_size=6), max_size=30),
    st.sampled_from(list(PlannerName)),
    st.integers(1, 7),
)
def test_every_planner_returns_a_permutation(prompts, name, batch_size) -> None:
    plan = make_planner(name, batch_size=batch_size).plan(requests_of(prompts))
    assert sorted(plan.order) == list(range(len(prompts)))
    assert plan.batches.tolist() == sorted(plan.batches.tolist())
    if name is PlannerName.DFS:
        expected = RadixTree.build(prompts).sharing_ratio()
        assert abs(order_sharing_ratio(prompts, plan.order) - expected) < 1e-12
