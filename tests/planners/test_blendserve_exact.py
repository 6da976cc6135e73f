"""Exact expectations on tiny trees: densities with sharing, layer-wise sort, splits, M_L/M_R."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blend.planners import PlanRequest, make_planner
from blend.planners.blendserve import BlendServePlanner, split_memory
from blend.planners.blendserve.density import ResourceTree
from blend.planners.blendserve.split import conditional_split
from blend.planners.estimates import EstimateSource, LengthHint, estimate_outputs, select_warmup
from blend.planners.tree import build_compact_trie
from tests.support.toys import planner_toy_cost

PROMPTS = [[1, 2, 3, 4], [1, 2, 3, 5], [9, 9]]
OUTPUTS = [2, 2, 3]


def tree_of(prompts: list[list[int]], outputs: list[int]) -> ResourceTree:
    trie = build_compact_trie(prompts)
    return ResourceTree.build(trie, np.array(outputs, dtype=float), planner_toy_cost())


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


def test_estimates_borrow_the_nearest_measured_ancestor() -> None:
    prompts = [[1, 2, 3], [1, 2, 4], [1, 5], [6]]
    requests = [PlanRequest(r, p, 99) for r, p in zip("abcd", prompts, strict=True)]
    hints = [LengthHint([1, 2, 3, 7], 10, EstimateSource.WARMUP)]  # a's group measured
    hints.append(LengthHint([1, 5, 8], 30, EstimateSource.HISTORY))
    estimates = estimate_outputs(requests, hints)
    # a and b borrow the [1, 2] subtree (10); c the [1, 5] one (30); d only the root (20)
    assert estimates.tokens.tolist() == [10.0, 10.0, 30.0, 20.0]
    assert estimates.source == [
        EstimateSource.WARMUP,
        EstimateSource.WARMUP,
        EstimateSource.HISTORY,
        EstimateSource.WARMUP,
    ]
    assert estimates.grouped.tolist() == [True, True, True, False]
    # own lengths win; nothing measured: max_tokens
    own = [PlanRequest("a", prompts[0], 99, 7, EstimateSource.OWN), *requests[1:]]
    assert estimate_outputs(own).tokens.tolist() == [7.0, 7.0, 7.0, 7.0]
    assert estimate_outputs(requests).tokens.tolist() == [99.0] * 4
    assert estimate_outputs(requests).source == [EstimateSource.MAX_TOKENS] * 4


def test_censored_warmup_lengths() -> None:
    """A group none of whose warm-up requests finished is a guess; above the groups, where
    requests of unmeasured groups take their estimate, such a request counts as the tail of
    what finished there, not as its guess."""
    from blend.planners.estimates import conditional_mean

    lengths = [20, 80] * 9  # 18 finished in group [1, 2]: log-mean ln 40, log-std ln(4) / 2
    hints = [
        *(LengthHint([1, 2, 100 + i], n, EstimateSource.WARMUP) for i, n in enumerate(lengths)),
        LengthHint([1, 2, 8], 25, EstimateSource.WARMUP, censored=True, max_tokens=1000),
        LengthHint([5, 7], 100, EstimateSource.WARMUP, censored=True, max_tokens=1000),
        LengthHint([5, 8], 100, EstimateSource.WARMUP, censored=True, max_tokens=1000),
        LengthHint([6, 7], 100, EstimateSource.WARMUP, censored=True, max_tokens=1000),
    ]
    prompts = [[1, 2, 3], [5, 6], [6, 8], [9, 9]]
    requests = [PlanRequest(r, p, 1000) for r, p in zip("abcd", prompts, strict=True)]
    result = estimate_outputs(requests, hints)
    # a group with finished lengths: a lower bound counts at least as its mean
    assert result.tokens[0] >= np.mean(lengths)
    # groups where nothing finished: a guess between 100 and 1000 under the log-uniform
    # prior, as the lognormal of log-mean ln(316.2) and log-spread ln(10) / sqrt(12)
    sigma = math.log(10.0) / math.sqrt(12.0)
    guess = math.sqrt(100 * 1000) * math.exp(sigma**2 / 2)
    assert result.tokens[1:3] == pytest.approx([guess, guess])
    assert 316 < guess < 550  # above the prior's median, well below the midpoint
    assert result.spread[1:3] == pytest.approx([sigma, sigma])  # the prior's spread
    assert result.guessed.tolist() == [False, True, True, False]
    # d, a group with no measurement: the mean of everything above the groups, where each of
    # the three guessed hints counts as the tail beyond 100 tokens of the lognormal of what
    # finished there (capped at its 1,000-token limit), not as its guess
    tail = conditional_mean(math.log(40.0), math.log(4.0) / 2, 100.0, 1000.0)
    assert 100 < tail < guess
    group_a_sum = 19 * result.tokens[0]  # its 18 finished and its running one
    assert result.tokens[3] == pytest.approx((group_a_sum + 3 * tail) / 22, rel=1e-9)


def test_a_dataset_of_unique_prompts_is_not_read_as_without_spread() -> None:
    """Each prompt its own group: a measurement is its group's mean, so no residual says
    anything of the shape; the spread is that of the lengths around their common mean, and
    a lone running request is not a guess that raises every estimate."""
    rng = np.random.default_rng(0)
    lengths = np.rint(np.exp(rng.normal(np.log(100), 1.0, 90))).astype(int)
    hints = [
        LengthHint([7, i + 1, 3], int(n), EstimateSource.WARMUP) for i, n in enumerate(lengths)
    ]
    running = [
        LengthHint([7, 1000 + i, 3], int(max(lengths)), EstimateSource.WARMUP, True, 16384)
        for i in range(10)
    ]
    requests = [PlanRequest(f"r{i}", [7, 5000 + i, 3], 16384) for i in range(50)]
    result = estimate_outputs(requests, [*hints, *running])
    assert len(result.residuals) == 0  # not 90 zeros
    assert not result.guessed.any()
    assert np.all(result.spread > 0.8)  # the lengths' own log-spread, ~1.0
    # the mean of what finished and the ten running, each beyond the longest finished
    assert lengths.mean() < result.tokens[0] < (lengths.sum() + 10 * 4 * lengths.max()) / 100


def test_residuals_pool_groups_with_bessels_correction() -> None:
    """Two groups of two measurements: each residual is +-d around its group's mean, read as
    d * sqrt(2) (one degree of freedom spent on each mean); a group measured once adds none."""
    d = math.log(3.0)  # 10 and 90 around their log-mean ln 30
    hints = [
        LengthHint([1, 1, 1], 10, EstimateSource.WARMUP),
        LengthHint([1, 1, 2], 90, EstimateSource.WARMUP),
        LengthHint([2, 2, 1], 100, EstimateSource.WARMUP),
        LengthHint([2, 2, 2], 900, EstimateSource.WARMUP),
        LengthHint([3, 3, 1], 5, EstimateSource.WARMUP),
    ]
    result = estimate_outputs([PlanRequest("a", [4, 4], 1000)], hints)
    assert sorted(result.residuals) == pytest.approx(
        [-d * math.sqrt(2)] * 2 + [d * math.sqrt(2)] * 2
    )


def test_predictive_spread_widens_with_few_measurements() -> None:
    """The spread of an estimate from k finished lengths is their spread x sqrt(1 + 1/k):
    a group measured once counts wider than one measured often (pooled spread 0 aside)."""
    group = [[7, 7, i] for i in range(12)]
    requests = [PlanRequest(f"r{i}", [*p, 99], 1000) for i, p in enumerate(group[:2])]
    lengths = [10, 40, 10, 40, 10, 40, 10, 40]  # log-std ln(4) / 2 around their mean
    many = [
        LengthHint(p, n, EstimateSource.WARMUP) for p, n in zip(group[2:10], lengths, strict=True)
    ]
    widened = estimate_outputs(requests, many).spread
    assert widened[0] == pytest.approx(math.log(4.0) / 2.0 * math.sqrt(1 + 1 / 8))


def test_warmup_covers_large_prefix_groups_and_skips_measured_ones() -> None:
    prompts = [[5, 5, i] for i in range(40)] + [[8, i] for i in range(360)]
    trie = build_compact_trie(prompts)
    nothing = np.zeros(400, dtype=bool)
    sample = select_warmup(trie, nothing, 0.01, seed=3)
    assert len(set(sample.tolist())) == len(sample) >= 4
    assert (sample < 40).any()  # the small group got one even if the uniform draw missed it
    measured = nothing.copy()
    measured[40:] = True  # the big group is measured (history): only the small one is sampled
    sample = select_warmup(trie, measured, 0.01, seed=3)
    assert (sample < 40).all() and len(sample) == 4


def test_blendserve_plan_records_the_split_and_budgets() -> None:
    prompts = [[1, k] for k in range(20)] + [[2, k] for k in range(20)]
    outputs = [1] * 20 + [500] * 20
    requests = [PlanRequest(str(i), p, 8, outputs[i]) for i, p in enumerate(prompts)]
    plan = BlendServePlanner(planner_toy_cost(), scan_window=8, online=False).plan(requests)
    params = plan.params
    assert params["m_L_tokens"] + params["m_R_tokens"] == pytest.approx(
        planner_toy_cost().kv_capacity_tokens
    )
    assert params["rho_L"] > params["rho_rt"] > params["rho_R"]
    assert params["n_left"] + params["n_right"] == 40
    assert plan.sides[0] == "L" and "R" in plan.sides  # dense first, sparse blended in
    online = BlendServePlanner(planner_toy_cost(), scan_window=8).plan(requests)
    assert online.admission == "dual-scan" and online.sides.tolist() == [None] * 40
    # the density-sorted sequence: dense group first
    assert online.order.tolist() == list(range(40))


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
    plan = make_planner("naive-blend").plan(requests)
    assert plan.order.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert plan.sides.tolist() == ["L"] * 3 + ["R"] * 3 + ["L"] * 3


def test_a_request_still_running_counts_at_its_groups_tail() -> None:
    """A censored length is one of its group's long ones: with a lognormal fitted to what
    finished, it counts as the mean beyond its length so far."""
    from scipy import integrate, stats

    from blend.planners.estimates import conditional_mean

    mu, sigma, seen = math.log(200.0), 0.8, 400.0
    dist = stats.lognorm(s=sigma, scale=math.exp(mu))
    tail, _ = integrate.quad(lambda x: x * dist.pdf(x), seen, np.inf)
    assert conditional_mean(mu, sigma, seen) == pytest.approx(tail / dist.sf(seen), rel=1e-6)
    assert conditional_mean(mu, sigma, seen) > seen
    prompts = [[1, 2, i] for i in range(6)]
    requests = [PlanRequest("a", [1, 2, 99], 10_000)]
    finished = [
        LengthHint(p, n, EstimateSource.WARMUP)
        for p, n in zip(prompts, (100, 200, 400, 100, 200), strict=False)
    ]
    running = LengthHint(prompts[5], 900, EstimateSource.WARMUP, censored=True, max_tokens=10_000)
    with_running = estimate_outputs(requests, [*finished, running]).tokens[0]
    without = estimate_outputs(requests, finished).tokens[0]
    assert with_running > (5 * without + 900) / 6  # counted beyond its 900 tokens so far


def test_a_running_requests_tail_stops_at_its_limit() -> None:
    """E[min(L, limit) | L > seen]: the mass beyond max_tokens counts at max_tokens."""
    from scipy import integrate, stats

    from blend.planners.estimates import conditional_mean

    mu, sigma, seen, limit = math.log(50.0), 2.5, 200.0, 2048.0
    dist = stats.lognorm(s=sigma, scale=math.exp(mu))
    below, _ = integrate.quad(lambda x: x * dist.pdf(x), seen, limit)
    expected = (below + limit * dist.sf(limit)) / dist.sf(seen)
    capped = conditional_mean(mu, sigma, seen, limit)
    assert capped == pytest.approx(expected, rel=1e-6)
    assert seen < capped < conditional_mean(mu, sigma, seen)  # uncapped: 3,828 tokens
    assert capped < limit
