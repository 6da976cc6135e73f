"""Properties: blendserve plans are permutations that keep DFS-level sharing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from blend.planners import Plan, PlanRequest
from blend.planners.batchllm import BatchLlmPlanner
from blend.planners.blendserve import BlendServePlanner, NaiveBlendPlanner
from blend.planners.tree import RadixTree, order_sharing_ratio
from tests.support.toys import planner_toy_cost

prompt = st.lists(st.integers(0, 5), max_size=8)
output = st.integers(1, 300)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(prompt, output, st.booleans()), max_size=40), st.booleans())
def test_plans_are_permutations(items, online) -> None:
    requests = [
        PlanRequest(str(i), p, 50, d if known else None) for i, (p, d, known) in enumerate(items)
    ]
    for planner in (
        BlendServePlanner(planner_toy_cost(), scan_window=4, online=online),
        NaiveBlendPlanner(planner_toy_cost()),
        BatchLlmPlanner(),
    ):
        plan = planner.plan(requests)
        assert sorted(plan.order) == list(range(len(requests)))
        assert set(plan.sides) <= {"L", "R", None}


def stream_order(plan: Plan) -> list[int]:
    """The order as each scanner walks it: left stream, right stream."""
    return [
        i for side in ("L", "R") for i, s in zip(plan.order, plan.sides, strict=True) if s == side
    ]


@st.composite
def grouped_workload(draw) -> list[tuple[list[int], int]]:
    """4-6 prefix groups of 40-60 requests: a shared prefix, short unique suffixes."""
    items = []
    for g in range(draw(st.integers(4, 6))):
        prefix = [100 + g, *draw(st.lists(st.integers(0, 50), min_size=10, max_size=30))]
        output_len = draw(st.sampled_from([1, 4, 64, 900]))
        for k in range(draw(st.integers(40, 60))):
            suffix = draw(st.lists(st.integers(0, 50), min_size=1, max_size=6))
            items.append(([*prefix, 1000 + k, *suffix], output_len + k % 3))
    return items


@settings(max_examples=15, deadline=None)
@given(grouped_workload())
def test_blendserve_keeps_97_percent_of_dfs_sharing(items) -> None:
    prompts = [p for p, _ in items]
    requests = [PlanRequest(str(i), p, 2000, d) for i, (p, d) in enumerate(items)]
    plan = BlendServePlanner(planner_toy_cost(1e5), scan_window=16, online=False).plan(requests)
    dfs_sharing = RadixTree.build(prompts).sharing_ratio()
    assert order_sharing_ratio(prompts, stream_order(plan)) >= 0.97 * dfs_sharing
