"""The KV projection's one-pass refresh (memoised remaining steps, the longest memory-heavy
request read at the refresh) admits exactly what the old rebuild admitted: the old refresh and
the old per-event loop over the requests in flight are kept here as the reference, and both
drive the real simulator over random workloads (prefix groups, spread estimates, drawn
lengths, caches small enough to hold admission back). Requests adopted from a warm-up take
the same path in both (_with_foreign), so they are not varied here."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from bench.workloads.generators import default_cost
from blend.admission.dual_scan import DualScanAdmission, DualScanOptions, scan_sequence
from blend.admission.kv_projection import _MIDPOINTS, KvProjection, kernels
from blend.admission.kv_projection_kernels import ndtr, ndtri
from blend.engines.settings import EngineSettings
from blend.simulate import SimConfig, SimRequest
from blend.simulate.engine import simulate_online


@numba.njit(cache=False)
def _old_remaining_steps(
    estimate: np.ndarray, spread: np.ndarray, generated: np.ndarray, midpoints: np.ndarray
) -> np.ndarray:
    """The remaining-steps kernel as it was, every request recomputed at every refresh."""
    m, q = len(estimate), len(midpoints)
    out = np.empty((m, q))
    for i in range(m):
        d = max(estimate[i], 1.0)
        g = float(generated[i])
        if spread[i] <= 0.0:
            point = d - g if d > g else d
            for c in range(q):
                out[i, c] = point
            continue
        sigma = max(spread[i], 1e-9)
        mu = math.log(d) - sigma * sigma / 2.0
        survived = ndtr((math.log(max(g, 1e-9)) - mu) / sigma)
        for c in range(q):
            p = min(survived + midpoints[c] * (1.0 - survived), 1.0 - 1e-12)
            out[i, c] = max(math.ceil(math.exp(mu + sigma * ndtri(p)) - g), 1.0)
    return out


class OldProjection(KvProjection):
    """The projection rebuilt as before: numpy passes around the compiled kernels."""

    generated_of = None

    def refresh(self, generated_of) -> None:  # type: ignore[no-untyped-def]
        self.generated_of = generated_of
        live = np.flatnonzero(self._index >= 0)
        live = live[np.argsort(self._position[live], kind="stable")]
        g = generated_of(self._index[live]).astype(np.float64) if len(live) else np.zeros(0)
        self.pending_prompt_tokens = float(self._prefill[live][g == 0].sum())
        r = _old_remaining_steps(self._estimate[live], self._spread[live], g, _MIDPOINTS)
        self._lifetime[live] = r.max(axis=1) if len(live) else 0.0
        shared = np.asarray(self._shared_between(self._position[live]), dtype=np.float64)
        if len(shared):
            prompt = self._prompt_kv[live]
            shared[0] = 0.0
            shared[1:] = np.minimum(shared[1:], np.minimum(prompt[1:], prompt[:-1]))
        compiled = kernels()
        a, b, r_entries = compiled.prefix_entries(g, self._prompt_kv[live], shared, r)
        if self._foreign:
            a, b, r_entries = self._with_foreign(generated_of, a, b, r_entries)
        if len(r_entries) + 1 > len(self._r):
            self._alloc(2 * len(r_entries))
        self._n = len(r_entries)
        compiled.build(a, r_entries, b, *self._arrays())


class OldDualScan(DualScanAdmission):
    """The dual scan with the old projection and the old loop for the critical path."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._projection = OldProjection(self._shared_between)

    def _longest_memory_heavy(self) -> float:
        heavy = [i for i in self._inflight if i not in self._inflight_dense]
        if not heavy:
            return 0.0
        estimates = np.fromiter((self._inflight[i].estimate for i in heavy), float, len(heavy))
        generated = self._projection.generated_of(np.asarray(heavy, dtype=np.int64))
        return float(np.max(estimates - generated))


def _workload(seed: int) -> tuple[list[SimRequest], np.ndarray, np.ndarray]:
    """Requests under shared prefixes, each group with an estimate and a spread (some point
    estimates), lengths drawn around them (some far past their estimate)."""
    rng = np.random.default_rng(seed)
    n, groups = int(rng.integers(150, 400)), int(rng.integers(3, 12))
    heads = [rng.integers(0, 5000, int(rng.integers(0, 120))) for _ in range(groups)]
    group = rng.integers(0, groups, n)
    mean = rng.choice([8.0, 40.0, 150.0, 1500.0, 3000.0], groups) * rng.uniform(0.7, 1.3, groups)
    spread = np.where(rng.random(groups) < 0.25, 0.0, rng.uniform(0.2, 1.5, groups))
    requests, estimates, spreads = [], np.empty(n), np.empty(n)
    for i, g in enumerate(group.tolist()):
        prompt = np.concatenate((heads[g], rng.integers(0, 5000, int(rng.integers(1, 60)))))
        length = mean[g] * math.exp(rng.normal(0.0, max(spread[g], 0.3)))
        requests.append(SimRequest(str(i), prompt.tolist(), min(6000, max(1, int(length)))))
        estimates[i], spreads[i] = mean[g], spread[g]
    return requests, estimates, spreads


def _run(cls, requests, estimates, spreads, settings, options, kv_tokens):  # type: ignore[no-untyped-def]
    cost = default_cost()
    prompts = [r.prompt_token_ids for r in requests]
    order = np.arange(len(requests))
    sequence = scan_sequence(prompts, order, estimates, spreads)
    policy = cls(sequence, cost, options, settings)
    config = SimConfig(
        kv_capacity_tokens=kv_tokens,
        block_size=16,
        max_num_batched_tokens=settings.max_num_batched_tokens,
        max_num_seqs=settings.max_num_seqs,
    )
    return simulate_online(requests, policy, cost, config), policy


@pytest.mark.parametrize("seed", range(8))
def test_the_one_pass_refresh_admits_exactly_what_the_old_rebuild_admitted(seed: int) -> None:
    requests, estimates, spreads = _workload(seed)
    rng = np.random.default_rng([seed, 7])
    settings = EngineSettings(int(rng.choice([256, 1024, 4096])), int(rng.choice([16, 64])))
    options = DualScanOptions(pace=bool(seed % 2))
    kv_tokens = int(rng.choice([8000, 30000, 100000]))
    new, new_policy = _run(
        DualScanAdmission, requests, estimates, spreads, settings, options, kv_tokens
    )
    old, old_policy = _run(OldDualScan, requests, estimates, spreads, settings, options, kv_tokens)
    assert new.admission_order.tolist() == old.admission_order.tolist()
    assert (new.makespan_s, new.n_steps, new.n_preemptions) == (
        old.makespan_s,
        old.n_steps,
        old.n_preemptions,
    )
    assert (new_policy.n_moved, new_policy.n_resplits) == (
        old_policy.n_moved,
        old_policy.n_resplits,
    )
