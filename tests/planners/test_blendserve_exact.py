"""Exact expectations on tiny trees: densities with sharing, layer-wise sort, splits, M_L/M_R."""

from __future__ import annotations

import numpy as np
import pytest

from blend.planners import PlanRequest, make_planner
from blend.planners.blendserve import BlendServePlanner, split_memory
from blend.planners.blendserve.density import ResourceTree
from blend.planners.blendserve.estimates import estimate_output_lens, warmup_indices
from blend.planners.blendserve.split import conditional_split
from blend.tree import build_compact_trie

from .conftest import toy_cost

PROMPTS = [[1, 2, 3, 4], [1, 2, 3, 5], [9, 9]]
OUTPUTS = [2, 2, 3]


def tree_of(prompts: list[list[int]], outputs: list[int]) -> ResourceTree:
    trie = build_compact_trie(prompts)
    return ResourceTree.build(trie, np.array(outputs, dtype=float), toy_cost())


def node_of(tree: ResourceTree, request: int) -> int:
    return int(np.flatnonzero(tree.trie.leaf_request == request)[0])


def test_densities_count_shared_tokens_once() -> None:
    tree = tree_of(PROMPTS, OUTPUTS)
    leaf0, leaf2 = node_of(tree, 0), node_of(tree, 2)
    group = int(tree.parent[leaf0])
    # leaf 0: Comp 6, Mem 4*2 + 2 = 10, one unique token of 4 -> (1/4) 6 / 10
    assert tree.rho[leaf0] == pytest.approx(0.15)
    # the [1, 2, 3] group: Comp 12, Mem 20, unique 5 of 8 prompt tokens
    assert tree.unique_tokens[group] == 5
    assert tree.rho[group] == pytest.approx((5 / 8) * 12 / 20)
    # leaf 2 stands alone: Comp 5, Mem 6 + 4.5
    assert tree.rho[leaf2] == pytest.approx(5 / 10.5)
    # root: Comp 17, Mem 30.5, unique 7 of 10
    assert tree.rho[0] == pytest.approx(0.7 * 17 / 30.5)
    assert tree.sharing_ratio() == pytest.approx(0.3)


def test_layer_wise_sort_puts_denser_siblings_first() -> None:
    tree = tree_of(PROMPTS, OUTPUTS)
    order = tree.trie.leaf_request[tree.sorted_leaves()].tolist()
    assert order == [2, 0, 1]  # rho 0.476 (alone) before the 0.375 group; ties in token order
    denser_group = tree_of(PROMPTS, [1, 1, 30])
    assert denser_group.trie.leaf_request[denser_group.sorted_leaves()].tolist() == [0, 1, 2]


SPLIT_PROMPTS = [[7] * 10 + [k] for k in range(1, 7)]  # six requests under a 10-token prefix
SPLIT_OUTPUTS = [1, 1, 1, 1, 400, 1]  # request 4 is memory-heavy among compute-heavy siblings


def test_conditional_split_detaches_the_outlier_when_affordable() -> None:
    tree = tree_of(SPLIT_PROMPTS, SPLIT_OUTPUTS)
    report = conditional_split(tree, keep_sharing=0.5)  # budget: half of 50 shared tokens
    assert report.num_split == 1
    assert report.lost_shared_tokens == 10
    assert report.budget_tokens == 25
    assert tree.parent[node_of(tree, 4)] == 0
    assert tree.sharing_ratio() == pytest.approx(1 - 26 / 66)  # prefix 10 + 5 + 11 detached
    order = tree.trie.leaf_request[tree.sorted_leaves()].tolist()
    assert order == [0, 1, 2, 3, 5, 4]


def test_conditional_split_respects_the_sharing_budget() -> None:
    tree = tree_of(SPLIT_PROMPTS, SPLIT_OUTPUTS)
    report = conditional_split(tree, keep_sharing=0.99)  # 0.5 tokens: no split affordable
    assert report.num_split == 0
    assert tree.parent[node_of(tree, 4)] != 0


@pytest.mark.parametrize(
    ("rho_root", "expected"),
    [(2.0, (50.0, 50.0)), (2.5, (75.0, 25.0)), (4.0, (100.0, 0.0)), (0.5, (0.0, 100.0))],
)
def test_split_memory_balances_at_the_root_density(rho_root, expected) -> None:
    assert split_memory(100.0, 3.0, 1.0, rho_root) == pytest.approx(expected)


def test_split_memory_halves_when_sides_are_equally_dense() -> None:
    assert split_memory(100.0, 1.0, 1.0, 1.0) == (50.0, 50.0)
    assert split_memory(100.0, 1.0, 2.0, 1.5) == (50.0, 50.0)


def test_estimates_borrow_the_nearest_sampled_ancestor() -> None:
    prompts = [[1, 2, 3], [1, 2, 4], [1, 5], [6]]
    requests = [
        PlanRequest("a", prompts[0], 99, 10),
        PlanRequest("b", prompts[1], 99, None),
        PlanRequest("c", prompts[2], 99, 30),
        PlanRequest("d", prompts[3], 99, None),
    ]
    estimates = estimate_output_lens(build_compact_trie(prompts), requests)
    # b borrows its [1, 2] subtree's mean (a: 10); d's only sampled ancestor is the root (20)
    assert estimates.tolist() == [10.0, 10.0, 30.0, 20.0]
    unknown = [PlanRequest(r.request_id, r.prompt_token_ids, 99) for r in requests]
    assert estimate_output_lens(build_compact_trie(prompts), unknown).tolist() == [99.0] * 4


def test_warmup_sample_covers_large_prefix_groups_and_runs_first() -> None:
    prompts = [[5, 5, i] for i in range(40)] + [[8, i] for i in range(360)]
    trie = build_compact_trie(prompts)
    sample = warmup_indices(trie, 0.01, seed=3)
    assert len(set(sample.tolist())) == len(sample) >= 4
    assert (sample < 40).any()  # the small group got one even if the uniform draw missed it
    requests = [PlanRequest(str(i), p, 8) for i, p in enumerate(prompts)]
    plan = BlendServePlanner(toy_cost(), warmup_fraction=0.01, seed=3).plan(requests)
    assert plan.order[: len(sample)] == sample.tolist()
    assert plan.sides[: len(sample)] == ["W"] * len(sample)
    assert set(plan.sides[len(sample) :]) <= {"L", "R"}


def test_blendserve_plan_records_the_split_and_budgets() -> None:
    prompts = [[1, k] for k in range(20)] + [[2, k] for k in range(20)]
    outputs = [1] * 20 + [500] * 20
    requests = [PlanRequest(str(i), p, 8, outputs[i]) for i, p in enumerate(prompts)]
    plan = BlendServePlanner(toy_cost(), warmup_fraction=0.0, scan_window=8).plan(requests)
    params = plan.params
    assert params["m_L_tokens"] + params["m_R_tokens"] == pytest.approx(
        toy_cost().kv_capacity_tokens
    )
    assert params["rho_L"] > params["rho_rt"] > params["rho_R"]
    assert params["n_left"] + params["n_right"] == 40
    assert plan.sides[0] == "L" and "R" in plan.sides  # dense first, sparse blended in
    assert params["max_num_batched_tokens"] > 0


def test_make_planner_names_bad_specs() -> None:
    with pytest.raises(ValueError, match="Unknown hardware spec 'nope'"):
        make_planner("blendserve", hardware="nope")
    planner = make_planner("blendserve", model_spec="qwen2.5-7b", hardware="h100-80g")
    assert planner.plan([PlanRequest("x", [1, 2], 4)]).params["hardware"] == "h100-80g"


def test_naive_blend_alternates_groups_from_both_ends() -> None:
    prompts = (
        [[1, 1, k] for k in range(3)]
        + [[2, 2, k] for k in range(3)]
        + [[3, 3, k] for k in range(3)]
    )
    outputs = [1] * 3 + [100] * 3 + [10] * 3  # densest group 1, then 3, sparsest 2
    requests = [PlanRequest(str(i), p, 8, outputs[i]) for i, p in enumerate(prompts)]
    plan = make_planner("naive-blend", warmup_fraction=0.0).plan(requests)
    assert plan.order == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert plan.sides == ["L"] * 3 + ["R"] * 3 + ["L"] * 3
