"""The KV projection's peak equals a brute-force walk over every future step; a request with
a spread counts as quantiles of its lognormal length, conditioned on what it produced; shared
prompt blocks count once, until the last request holding them ends."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from blend.admission.kv_projection import QUANTILES, KvProjection, remaining_steps

REQUEST = st.tuples(st.integers(1, 60), st.integers(1, 50), st.integers(0, 70))  # u, d, g


def brute_peak(held: list[tuple], joining: tuple[float, float] | None) -> float:
    """max over every step tau >= 0 of sum(w x (f + tau) for r > tau), one step at a time;
    entries are (f, r) or (f, r, w)."""
    everyone = [(*e, 1.0)[:3] for e in [*held, *([joining] if joining else [])]]
    horizon = int(max((r for _, r, _ in everyone), default=0)) + 2
    steps = np.arange(horizon, dtype=np.float64)
    total = np.zeros(horizon)
    for f, r, w in everyone:
        total += np.where(steps < r, w * (f + steps), 0.0)
    return float(total.max()) if everyone else 0.0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(REQUEST, max_size=12),
    st.lists(st.tuples(st.integers(1, 60), st.integers(1, 50)), max_size=4),
    st.tuples(st.integers(1, 60), st.integers(1, 50)),
)
def test_peak_with_matches_brute_force(inflight, committed, candidate) -> None:
    projection = KvProjection(capacity=2)  # grows as requests are added
    held = []
    generated = {}
    for index, (u, d, g) in enumerate(inflight):
        projection.add(index, u, d)
        generated[index] = g
        remaining = d - g if d > g else d  # past its estimate: another estimate's worth
        held.append((u + g, remaining))
    projection.refresh(lambda idx: np.array([generated[int(i)] for i in idx]))
    for k, (u, d) in enumerate(committed):
        projection.add(1000 + k, u, d)
        projection.commit(u, d)
        held.append((u, d))
    assert projection.peak() == brute_peak(held, None)
    assert projection.peak_with(*candidate) == brute_peak(held, candidate)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 60), st.integers(1, 80), st.integers(0, 120), st.floats(0.05, 2.0)
        ),
        min_size=1,
        max_size=8,
    ),
    st.tuples(st.integers(1, 60), st.integers(1, 50)),
)
def test_spread_requests_count_as_weighted_quantiles(inflight, candidate) -> None:
    projection = KvProjection()
    generated = {}
    held = []
    for index, (u, d, g, spread) in enumerate(inflight):
        projection.add(index, u, d, spread=spread)
        generated[index] = g
        r = remaining_steps(np.array([d], float), np.array([spread]), np.array([g]))
        held.extend((u + g, float(r[0, q]), 1.0 / QUANTILES) for q in range(QUANTILES))
    projection.refresh(lambda idx: np.array([generated[int(i)] for i in idx]))
    assert np.isclose(projection.peak(), brute_peak(held, None))
    assert np.isclose(projection.peak_with(*candidate), brute_peak(held, candidate))


def test_quantiles_of_a_lognormal_conditioned_on_the_tokens_so_far() -> None:
    estimate, spread = np.full(3, 200.0), np.array([1e-6, 0.8, 0.8])
    r = remaining_steps(estimate, spread, np.array([0, 0, 300]))
    assert np.all(np.abs(r[0] - 200.0) <= 1.0)  # no spread: every quantile at the estimate
    assert np.all(np.diff(r[1]) > 0)  # quantile midpoints, ascending
    assert r[1, 0] < 200.0 < r[1, -1]
    # median of a lognormal with mean 200 and sigma 0.8: 200 exp(-0.32), between the middle two
    assert r[1, 1] < 200.0 * np.exp(-0.32) < r[1, 2]
    # having run past its estimate, it has more to go, every quantile past what it produced
    assert np.all(r[2] >= 1.0) and r[2, -1] > r[1, -1] - 300
    point_r = remaining_steps(np.array([50.0]), np.zeros(1), np.array([80]))
    assert point_r[0].tolist() == [50.0] * QUANTILES  # past it: another estimate's worth


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 12),  # prompt blocks shared with the one before
            st.integers(1, 12),  # own prompt blocks
            st.integers(1, 60),  # estimate
            st.integers(0, 40),  # generated
            st.sampled_from([0.0, 0.7]),  # spread
        ),
        min_size=1,
        max_size=10,
    ),
    st.tuples(st.integers(1, 60), st.integers(1, 50)),
)
def test_shared_prompt_blocks_count_once_until_the_last_holder_ends(members, candidate) -> None:
    """Prompts built block by block (a block: 4 tokens) with the given prefixes in common;
    the brute force counts the distinct blocks of the prompts still running at each step."""
    block = 4
    prompts: list[list[int]] = []
    shared_tokens = []
    fresh = iter(range(10**6))
    for shared, own, *_ in members:
        keep = min(shared, len(prompts[-1])) if prompts else 0
        prompts.append((prompts[-1][:keep] if prompts else []) + [next(fresh) for _ in range(own)])
        shared_tokens.append(block * keep)
    shared_arr = np.asarray(shared_tokens, dtype=float)

    def shared_between(positions: np.ndarray) -> np.ndarray:
        out = np.zeros(len(positions))
        for i in range(1, len(positions)):
            out[i] = shared_arr[positions[i - 1] + 1 : positions[i] + 1].min()
        return out

    projection = KvProjection(shared_between)
    generated = {}
    for i, (_, _, d, g, spread) in enumerate(members):
        projection.add(i, block * len(prompts[i]), d, position=i, spread=spread)
        generated[i] = g
    projection.refresh(lambda idx: np.array([generated[int(i)] for i in idx]))
    ests = np.array([m[2] for m in members], float)
    spreads = np.array([m[4] for m in members])
    gens = np.array([m[3] for m in members])
    r = remaining_steps(ests, spreads, gens)
    horizon = int(r.max()) + 2
    u, d = candidate

    def brute(with_candidate: bool) -> float:
        best = 0.0
        for tau in range(horizon + d):
            total = 0.0
            for c in range(QUANTILES):
                alive = [i for i in range(len(members)) if r[i, c] > tau]
                blocks = set().union(*(prompts[i] for i in alive)) if alive else set()
                total += block * len(blocks) + sum(gens[i] + tau for i in alive)
            total /= QUANTILES
            if with_candidate and tau < d:
                total += u + tau
            best = max(best, total)
        return best

    assert np.isclose(projection.peak(), brute(False))
    assert np.isclose(projection.peak_with(u, d), brute(True))


def test_lockstep_long_requests_fit_only_to_their_peak() -> None:
    """Three 100-token prompts that will each grow by 900 tokens peak at 3000 together."""
    projection = KvProjection()
    for index in range(3):
        projection.add(index, 100, 900)
        projection.commit(100, 900)
    assert projection.peak() == 3 * (100 + 899)  # just before they end
    assert projection.peak_with(100, 10) == 3 * (100 + 899)  # a short one is gone by then
    assert projection.peak_with(100, 900) == 4 * (100 + 899)
