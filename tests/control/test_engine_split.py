"""BlendServe's data-parallel split: a partition in sequence order, balanced, groups kept."""

from __future__ import annotations

import numpy as np
import pytest

from blend.admission.dual_scan import ScanSequence
from blend.scale.engine_split import share_loads, split_for_engines
from tests.support.toys import planner_toy_cost


def _sequence(n_groups: int, group_size: int, seed: int = 0) -> ScanSequence:
    """Prefix groups of `group_size` requests sharing a 50-token prefix, sorted by density:
    compute-heavy groups (long prompts, short outputs) first, memory-heavy ones last."""
    rng = np.random.default_rng(seed)
    n = n_groups * group_size
    heavy = np.repeat(np.arange(n_groups) >= n_groups // 2, group_size)
    prompt = np.where(heavy, 60.0, 400.0) + rng.integers(0, 20, n)
    output = np.where(heavy, 300.0, 8.0) + rng.integers(0, 20, n)
    shared = np.where(np.arange(n) % group_size == 0, 0.0, 50.0)
    return ScanSequence(np.arange(n, dtype=np.int64) + 1000, prompt, shared, output)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 8])
def test_shares_partition_the_sequence_in_order(k: int) -> None:
    sequence = _sequence(60, 7)
    shares = split_for_engines(sequence, planner_toy_cost(), k)
    assert len(shares) == k
    for share in shares:
        assert np.all(np.diff(share) > 0)  # sequence order, no repeats
    together = np.sort(np.concatenate(shares))
    assert np.array_equal(together, np.arange(len(sequence.index)))


def test_one_engine_takes_everything() -> None:
    sequence = _sequence(5, 3)
    (share,) = split_for_engines(sequence, planner_toy_cost(), 1)
    assert np.array_equal(share, np.arange(15))


def test_more_engines_than_requests_leaves_some_empty() -> None:
    sequence = _sequence(1, 3)
    shares = split_for_engines(sequence, planner_toy_cost(), 5)
    assert sorted(np.concatenate(shares).tolist()) == [0, 1, 2]
    assert sum(len(s) == 0 for s in shares) >= 2


def test_zero_engines_is_an_error() -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        split_for_engines(_sequence(2, 2), planner_toy_cost(), 0)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_every_engine_gets_its_share_of_compute_and_memory(k: int) -> None:
    sequence = _sequence(400, 5, seed=k)
    cost = planner_toy_cost()
    comp, mem = share_loads(sequence, cost, split_for_engines(sequence, cost, k))
    assert np.all(np.abs(comp / comp.mean() - 1) < 0.03)
    assert np.all(np.abs(mem / mem.mean() - 1) < 0.03)
    # so each share blends at about the whole sequence's density
    density = comp / mem
    root = comp.sum() / mem.sum()
    assert np.all(np.abs(density / root - 1) < 0.05)


def test_cuts_fall_between_prefix_groups() -> None:
    sequence = _sequence(400, 5)
    shares = split_for_engines(sequence, planner_toy_cost(), 4)
    owner = np.empty(len(sequence.index), dtype=np.int64)
    for e, share in enumerate(shares):
        owner[share] = e
    cuts = np.flatnonzero(np.diff(owner) != 0) + 1  # first positions after a change of engine
    assert len(cuts) >= 3
    assert np.all(sequence.shared_prev[cuts] == 0)


def test_a_contiguous_split_would_be_unbalanced() -> None:
    """The dealing matters: cutting the density-sorted sequence into k runs would leave the
    compute-heavy half's engines almost no memory traffic and the others all of it."""
    sequence = _sequence(400, 5)
    cost = planner_toy_cost()
    runs = np.array_split(np.arange(len(sequence.index)), 4)
    _, mem = share_loads(sequence, cost, runs)
    assert (mem / mem.mean()).max() > 1.5
    split_comp, split_mem = share_loads(sequence, cost, split_for_engines(sequence, cost, 4))
    assert (split_comp / split_comp.mean()).max() < 1.05
    assert (split_mem / split_mem.mean()).max() < 1.05
