"""Choose how a re-planned run is fed, and the engine's settings, by simulating the candidates.

Invariant: the search sees only what the pipeline knows when it runs: the planner's order and
each request's estimated output length with its spread and its max_tokens, and the measured
lengths' shape around their groups' means; never the true lengths. Every candidate simulates
the same requests with the same output lengths, drawn once from what the estimates say
(sample_lengths), so the search sees the tail a group's mean hides: the longest request of a
group sets the drain. The fastest simulated makespan wins, ties to the earlier candidate (the
running settings and the plan's own feed first), except that an in-order feed predicted to
preempt more than PREEMPTION_LIMIT of the requests is chosen only when nothing else is left.
An in-order feed hands vLLM requests whatever the cache holds: when it preempts at the drawn
lengths its batch overfills the cache, and it overfills it more whenever the real tail is
longer than drawn, so its prediction is the least trustworthy of all (measured: predicted
0.79 of its simulated makespan on a heavy-tailed chat, where it preempted 71% of the
requests). The dual scan is exempt: its KV projection adapts admission to the lengths as
they unfold, so a preemption at drawn lengths says little about the run (measured: a dual
scan predicted to preempt ran without preempting, and the rule applied to it cost 5.5%).

Candidates (at most 19 simulations for the dual scan, 9 for in-order plans):
1. every way to feed the plan at every token budget of TOKEN_CANDIDATES (128 .. 16384) and the
   running one, with the running max_num_seqs: the plan's own admission; for the dual scan
   also the dual scan without pacing (the token budget then the only throttle) and the
   guard's fallback, the same requests in depth-first order fed in order (vLLM filling its
   cache), so that the blend is kept only where it is predicted to beat in-order admission
   (GUARDS; lpt's order is an ablation: as a second guard the search picked it where the dual
   scan was 8% faster, docs/planners.md).
   One throttle, not two: the paced dual scan runs only at the running and the largest
   budget (a small budget under pacing throttles twice);
2. the best of 1 with the memory-centric max_num_seqs (as many requests as the KV cache
   holds at the mean footprint: BatchLLM's batching).
Above SEARCH_MAX_REQUESTS requests the search simulates a uniform sample in plan order and
scales its makespans by n / sample (the ranking is what the search needs; the prediction of a
sample is rougher).

The candidates are independent simulations: from PARALLEL_MIN_REQUESTS simulated requests up
they run in a pool of processes, one per core this process may use (search_workers); the
result is the same as one after the other, trial for trial.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from blend.admission.dual_scan import DualScanOptions, scan_sequence
from blend.admission.factory import admission_policy
from blend.cost.model import CostModel
from blend.engines.settings import TOKEN_CANDIDATES, EngineSettings, SettingsSource
from blend.planners.base import AdmissionKind
from blend.planners.prompt_tokens import take_prompts
from blend.simulate.types import SimConfig, SimRequest, SimResult

SEARCH_MAX_REQUESTS = 20_000  # requests simulated per candidate at most (a sample above)
PREEMPTION_LIMIT = 0.01  # share of the simulated requests a chosen in-order feed may preempt
# below this many simulated requests a candidate takes well under a second, less than a
# worker process needs to start (imports, compiled kernels read from numba's cache: ~2 s)
PARALLEL_MIN_REQUESTS = 5_000


class Guard(StrEnum):
    """The order a guard feeds the dual scan's requests in, in order (vLLM filling its cache)."""

    DEPTH_FIRST = "depth-first"  # dfs's: the prompt trie walked depth-first, all the sharing
    LONGEST_FIRST = "longest-first"  # lpt's: the longest estimated output first, ties DFS


# the guards a dual-scan search tries (bench/planners.py --guards varies it)
GUARDS: tuple[Guard, ...] = (Guard.DEPTH_FIRST,)


@dataclass(frozen=True, slots=True)
class FeedChoice:
    """How the re-planned requests enter the engine."""

    admission: AdmissionKind  # the plan's admission, or IN_ORDER for a guard
    pace: bool = True  # the dual scan paces its compute-heavy side (dual scan only)
    guard: Guard | None = None  # a guard: the requests in this order, fed in order

    def label(self) -> str:
        if self.guard is not None:
            return f"in-order ({self.guard.value} fallback)"
        if self.admission is AdmissionKind.DUAL_SCAN:
            return "dual-scan" if self.pace else "dual-scan, unpaced"
        return str(self.admission.value)


Candidate = tuple[EngineSettings, FeedChoice]  # engine settings and a feed, simulated once


@dataclass(frozen=True, slots=True)
class SearchTrial:
    settings: EngineSettings
    feed: FeedChoice
    makespan_s: float  # predicted: simulated at the drawn lengths, scaled to the whole plan
    n_preemptions: int


@dataclass(frozen=True, slots=True)
class PlanSearch:
    """The search's trials, in the order simulated, and the fastest."""

    best: SearchTrial
    trials: list[SearchTrial]
    n_simulated: int  # requests each candidate simulated (a sample above SEARCH_MAX_REQUESTS)
    n_requests: int  # requests of the plan

    def to_json(self) -> list[dict[str, object]]:
        return [
            {
                "max_num_batched_tokens": t.settings.max_num_batched_tokens,
                "max_num_seqs": t.settings.max_num_seqs,
                "feed": t.feed.label(),
                "makespan_s": t.makespan_s,
                "n_preemptions": t.n_preemptions,
            }
            for t in self.trials
        ]


@dataclass(frozen=True, slots=True)
class SearchInputs:
    """What the pipeline knows of the re-planned requests, in plan order."""

    prompts: Sequence[Sequence[int] | np.ndarray]  # token ids
    estimates: np.ndarray  # float64 estimated output tokens
    spread: np.ndarray  # float64 std of log length behind each estimate (0: a point)
    max_tokens: np.ndarray  # int64 output limits
    admission: AdmissionKind  # how the plan is fed
    # log-length residuals of the measurements around their groups' means (estimates.py):
    # the shape lengths are drawn with where there are MIN_RESIDUALS of them
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    guessed: np.ndarray | None = None  # bool: the estimate is a guess (drawn from its prior)
    seed: int = 0  # of the drawn lengths and the sample
    dual_scan: DualScanOptions = field(default_factory=DualScanOptions)

    def __post_init__(self) -> None:
        n = len(self.prompts)
        for name in ("estimates", "spread", "max_tokens"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"SearchInputs.{name} has {len(getattr(self, name))} != {n}")


MIN_RESIDUALS = 20  # finished measurements that make their shape worth drawing from


def sample_lengths(
    estimates: np.ndarray,
    spread: np.ndarray,
    max_tokens: np.ndarray,
    seed: int,
    residuals: np.ndarray | None = None,
    guessed: np.ndarray | None = None,
) -> np.ndarray:
    """Output lengths drawn from what the estimates say, rounded and clipped to
    [1, max_tokens]: a point where the spread is 0; where there are at least MIN_RESIDUALS
    residuals (groups measured twice or more), the estimate times a measured shape
    (exp(residual), residuals drawn from the measurements' own log deviations from their
    groups' means, scaled so the mean is the estimate: a bimodal or heavy-tailed group keeps
    its shape, and the tail goes no further than what was seen); else, and for guesses
    (`guessed`), a lognormal with the estimate as its mean and the spread as its sigma.

    Stratified: the requests that share an estimate (a prefix group) get one draw from each
    of as many equal-probability slices, in random order, so a group of 20 always holds its
    share of the upper tail (independent draws leave a 1-in-10 chance that 20 draws of a
    sigma-1.9 guess all stay below its 88th percentile, and the drain the search predicts
    with them)."""
    from scipy.special import ndtri

    rng = np.random.default_rng(seed)
    mean = np.maximum(np.asarray(estimates, dtype=np.float64), 1.0)
    sigma = np.maximum(np.asarray(spread, dtype=np.float64), 0.0)
    u = _stratified(mean, sigma, rng)
    z = ndtri(np.clip(u, 1e-12, 1.0 - 1e-12))
    lengths = np.where(sigma > 0, np.exp(np.log(mean) - sigma**2 / 2.0 + sigma * z), mean)
    shape = np.sort(np.asarray(residuals if residuals is not None else [], dtype=np.float64))
    if len(shape) >= MIN_RESIDUALS:
        measured = sigma > 0
        if guessed is not None:
            measured &= ~np.asarray(guessed, dtype=bool)
        # the empirical quantile of u (a measured residual, as drawn with replacement), then
        # a scale that keeps the estimate as the mean
        at = shape[np.minimum((u * len(shape)).astype(np.int64), len(shape) - 1)]
        lengths = np.where(measured, mean * np.exp(at) / np.mean(np.exp(shape)), lengths)
    return np.clip(np.rint(lengths), 1, np.maximum(max_tokens, 1)).astype(np.int64)


def _stratified(mean: np.ndarray, sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A probability per request: within each set of equal (mean, sigma), one uniform draw
    from each of as many equal slices of [0, 1), in random order."""
    n = len(mean)
    u = np.empty(n)
    _, group = np.unique(np.stack((mean, sigma)), axis=1, return_inverse=True)
    group = group.reshape(-1)
    by_group = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group[by_group]) != 0])
    for start, stop in zip(starts.tolist(), [*starts[1:].tolist(), n], strict=True):
        members = by_group[start:stop]
        m = len(members)
        u[members] = (rng.permutation(m) + rng.random(m)) / m
    return u


def feed_choices(admission: AdmissionKind) -> list[FeedChoice]:
    """The plan's own feed first; for the dual scan also unpaced and the guards (GUARDS)."""
    own = FeedChoice(admission)
    if admission is not AdmissionKind.DUAL_SCAN:
        return [own]
    guards = [FeedChoice(AdmissionKind.IN_ORDER, guard=g) for g in GUARDS]
    return [own, FeedChoice(admission, pace=False), *guards]


def guard_order(
    feed: FeedChoice, prompts: Sequence[Sequence[int] | np.ndarray], estimates: np.ndarray
) -> np.ndarray | None:
    """Positions of the plan's requests (`prompts` and `estimates` in plan order) in the order
    `feed`'s guard feeds them; None for the plan's own order. The one rule the search, the
    simulated pipeline and the executor's re-plan apply alike."""
    from blend.planners.simple import longest_first_order
    from blend.planners.tree import lexicographic_order

    if feed.guard is None:
        return None
    if feed.guard is Guard.DEPTH_FIRST:
        return lexicographic_order(prompts)
    return longest_first_order(prompts, estimates)


def search_plan(
    inputs: SearchInputs,
    cost: CostModel,
    running: EngineSettings,
    template: SimConfig,
    *,
    memory_centric: int | None = None,
    max_model_len: int,
    workers: int | None = None,
    max_simulated: int | None = None,
) -> PlanSearch:
    """Feed and settings for `inputs` (module docstring); `running`: the engine's settings
    now; `template`: the engine's other settings (KV cache, block size, prefix caching);
    `workers`: processes that simulate candidates side by side (None: search_workers);
    `max_simulated`: requests simulated at most, a sample above (None: SEARCH_MAX_REQUESTS)."""
    limit = SEARCH_MAX_REQUESTS if max_simulated is None else max_simulated
    simulator = _CandidateSimulator(inputs, cost, template, limit)
    tried: set[tuple[int, int, FeedChoice]] = set()  # settings compared by shape

    def candidate(tokens: int, n_seqs: int, feed: FeedChoice) -> Candidate:
        settings = EngineSettings(
            tokens, n_seqs, running.chunked_prefill, SettingsSource.SEARCH
        ).validated(max_model_len)
        if (settings.max_num_batched_tokens, settings.max_num_seqs) == (
            running.max_num_batched_tokens,
            running.max_num_seqs,
        ):
            settings = running.validated(max_model_len)
        return settings, feed

    def fresh(pairs: list[Candidate]) -> list[Candidate]:
        """The pairs not tried yet (each marked tried), first of each kind kept."""
        out = []
        for pair in pairs:
            if _shape(pair) not in tried:
                tried.add(_shape(pair))
                out.append(pair)
        return out

    first_round = fresh(
        [
            candidate(tokens, running.max_num_seqs, feed)
            for feed in feed_choices(inputs.admission)
            for tokens in _budgets(feed, running.max_num_batched_tokens)
        ]
    )
    n_workers = workers or search_workers(simulator.n_simulated, len(first_round))
    with _TrialRunner(simulator, n_workers) as runner:
        trials = runner.trials(first_round)
        leader = choose_trial(trials, simulator.n_simulated)
        if memory_centric is not None:
            second = fresh(
                [candidate(leader.settings.max_num_batched_tokens, memory_centric, leader.feed)]
            )
            trials += runner.trials(second)
    best = choose_trial(trials, simulator.n_simulated)
    return PlanSearch(best, trials, simulator.n_simulated, len(inputs.prompts))


def choose_trial(trials: list[SearchTrial], n_simulated: int) -> SearchTrial:
    """The fastest trial, leaving out in-order feeds predicted to preempt more than
    PREEMPTION_LIMIT of the requests unless nothing else is left; the first of equal ones."""
    limit = PREEMPTION_LIMIT * n_simulated
    kept = [
        t
        for t in trials
        if t.feed.admission is not AdmissionKind.IN_ORDER or t.n_preemptions <= limit
    ]
    return min(kept or trials, key=lambda t: t.makespan_s)


def _shape(pair: Candidate) -> tuple[int, int, FeedChoice]:
    settings, feed = pair
    return settings.max_num_batched_tokens, settings.max_num_seqs, feed


def search_workers(n_simulated: int, n_candidates: int) -> int:
    """Processes worth starting for n_candidates simulations of n_simulated requests each:
    one per core this process may use, none beyond the candidates, and 1 (no pool) for
    samples too small to repay a worker's start."""
    if n_simulated < PARALLEL_MIN_REQUESTS or n_candidates < 2:
        return 1
    return max(1, min(n_candidates, len(os.sched_getaffinity(0))))


class _TrialRunner:
    """Runs candidates here (one worker) or in a pool of spawned processes that each hold a
    copy of the simulator. Spawned, not forked: the search may run in a process that holds
    an engine's threads or a GPU context, which a fork would copy half-initialised."""

    def __init__(self, simulator: _CandidateSimulator, workers: int) -> None:
        self.simulator, self.workers = simulator, workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> _TrialRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def trials(self, pairs: list[Candidate]) -> list[SearchTrial]:
        """One trial per pair, in the order given."""
        if self.workers <= 1 or len(pairs) < 2:
            return [self.simulator.trial(settings, feed) for settings, feed in pairs]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_hold_simulator,
                initargs=(self.simulator,),
            )
        return list(self._pool.map(_pooled_trial, pairs))


_WORKER_SIMULATOR: _CandidateSimulator | None = None  # a pool worker's copy


def _hold_simulator(simulator: _CandidateSimulator) -> None:
    global _WORKER_SIMULATOR
    _WORKER_SIMULATOR = simulator


def _pooled_trial(pair: Candidate) -> SearchTrial:
    assert _WORKER_SIMULATOR is not None, "the pool's initializer sets the simulator"
    return _WORKER_SIMULATOR.trial(*pair)


def _budgets(feed: FeedChoice, running_tokens: int) -> list[int]:
    """Token budgets tried with a feed, the running one first: every candidate, except for
    the paced dual scan, which is the throttle itself: a budget below the running one would
    be a second throttle on top (they compound), so it runs at the running and the largest."""
    if feed.admission is AdmissionKind.DUAL_SCAN and feed.pace:
        return [running_tokens, max(TOKEN_CANDIDATES)]
    return [running_tokens, *TOKEN_CANDIDATES]


class _CandidateSimulator:
    """The requests a search simulates (a sample in plan order above SEARCH_MAX_REQUESTS) at
    their drawn lengths, and one simulation per candidate."""

    def __init__(
        self,
        inputs: SearchInputs,
        cost: CostModel,
        template: SimConfig,
        limit: int = SEARCH_MAX_REQUESTS,
    ) -> None:
        n = len(inputs.prompts)
        keep = np.arange(n)
        if n > limit:
            rng = np.random.default_rng([inputs.seed, 1])
            keep = np.sort(rng.choice(n, limit, replace=False))
        self.n_simulated = len(keep)
        self.scale = n / max(1, len(keep))
        # only the sample is kept: a pool worker receives a pickled copy of this object
        self.cost, self.template, self.dual_scan = cost, template, inputs.dual_scan
        self.prompts = take_prompts(inputs.prompts, keep)  # one read where ids are not held
        self.estimates = np.asarray(inputs.estimates, dtype=np.float64)[keep]
        self.spread = np.asarray(inputs.spread, dtype=np.float64)[keep]
        guessed = None if inputs.guessed is None else np.asarray(inputs.guessed)[keep]
        lengths = sample_lengths(
            self.estimates,
            self.spread,
            np.asarray(inputs.max_tokens)[keep],
            inputs.seed,
            inputs.residuals,
            guessed,
        )
        self.requests = [
            SimRequest(str(i), prompt, int(d))
            for i, (prompt, d) in enumerate(zip(self.prompts, lengths.tolist(), strict=True))
        ]
        self._guards: dict[Guard, np.ndarray] = {}  # each guard's order, made once

    def trial(self, settings: EngineSettings, feed: FeedChoice) -> SearchTrial:
        result = self.run(settings, feed)
        return SearchTrial(settings, feed, result.makespan_s * self.scale, result.n_preemptions)

    def run(self, settings: EngineSettings, feed: FeedChoice) -> SimResult:
        from blend.simulate.engine import simulate_online

        order = np.arange(len(self.requests))
        if feed.guard is not None:
            if feed.guard not in self._guards:
                guarded = guard_order(feed, self.prompts, self.estimates)
                assert guarded is not None, "a feed with a guard has a guard's order"
                self._guards[feed.guard] = guarded
            order = self._guards[feed.guard]
        sequence = scan_sequence(self.prompts, order, self.estimates[order], self.spread[order])
        options = replace(self.dual_scan, pace=feed.pace)
        policy = admission_policy(feed.admission, sequence, self.cost, settings, options)
        config = replace(
            self.template,
            max_num_batched_tokens=settings.max_num_batched_tokens,
            max_num_seqs=settings.max_num_seqs,
            chunked_prefill=settings.chunked_prefill,
        )
        return simulate_online(self.requests, policy, self.cost, config)
