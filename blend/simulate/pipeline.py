"""Simulate a workload the way the real pipeline runs it, warm-up and re-plan included.

Invariant: the planner sees only what the executor would know: prompts, max_tokens, and the
output lengths of warm-up requests once the simulated engine has finished them (still-running
ones as lower bounds). True lengths reach the planner only with `oracle=True`. The steps:
pick the warm-up sample (estimates.select_warmup), run it first, re-plan the other requests
with the measured lengths, and feed them with the admission policy the plan asks for; the
same WarmupThenRest and policy objects drive the executor (blend/execute/stage.py), and the
rest is handed over at the same event by the same step (admission.warmup.hand_over_if_ended).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from blend.admission.base import AdmissionPolicy
from blend.admission.dual_scan import DualScanOptions, scan_sequence
from blend.admission.factory import admission_policy
from blend.admission.warmup import RestOfRun, WarmupOutcome, WarmupThenRest, adopt_running
from blend.cost.model import CostModel
from blend.engines.settings import DEFAULT_ENGINE_SETTINGS, EngineSettings
from blend.planners import (
    EstimateSource,
    LengthHint,
    OutputEstimates,
    Plan,
    Planner,
    PlanRequest,
    estimate_outputs,
    select_warmup,
)
from blend.planners.estimates import WARMUP_FRACTION
from blend.planners.tree import build_compact_trie
from blend.simulate.engine import simulate_online
from blend.simulate.io import Workload
from blend.simulate.settings_search import (
    FeedChoice,
    PlanSearch,
    SearchInputs,
    guard_order,
    search_plan,
)
from blend.simulate.types import SimConfig, SimResult


@dataclass(frozen=True, slots=True)
class SimulatedEngine:
    """The engine a simulation runs: its settings plus what the hardware fixes."""

    settings: EngineSettings
    block_size: int = 16  # tokens per KV block (vLLM GPU 16; its CPU build 128)
    kv_capacity_tokens: int | None = None  # None: the cost model's
    enable_prefix_caching: bool = True

    def config(self) -> SimConfig:
        return SimConfig(
            max_num_batched_tokens=self.settings.max_num_batched_tokens,
            max_num_seqs=self.settings.max_num_seqs,
            kv_capacity_tokens=self.kv_capacity_tokens,
            block_size=self.block_size,
            enable_prefix_caching=self.enable_prefix_caching,
            chunked_prefill=self.settings.chunked_prefill,
        )


@dataclass(frozen=True, slots=True)
class PlannedRest:
    """The plan of the requests after the warm-up, as the re-plan made it."""

    rest: np.ndarray  # request indices it orders
    plan: Plan  # order: indices into `rest`
    estimates: OutputEstimates  # of `rest`
    plan_seconds: float  # wall time of estimating and planning (s)
    max_tokens: np.ndarray  # int64 output limits of `rest`

    @property
    def ordered(self) -> np.ndarray:
        """Request indices in plan order."""
        return self.rest[np.asarray(self.plan.order, dtype=np.int64)]

    @property
    def ordered_estimates(self) -> np.ndarray:
        return self.estimates.tokens[np.asarray(self.plan.order, dtype=np.int64)]

    @property
    def ordered_spread(self) -> np.ndarray:
        return self.estimates.spread[np.asarray(self.plan.order, dtype=np.int64)]

    @property
    def ordered_max_tokens(self) -> np.ndarray:
        return self.max_tokens[np.asarray(self.plan.order, dtype=np.int64)]

    @property
    def informed(self) -> bool:
        """Whether any estimate rests on a measurement (not only max_tokens)."""
        return any(s is not EstimateSource.MAX_TOKENS for s in self.estimates.source)


@dataclass(frozen=True, slots=True)
class PipelineRun:
    """One simulated run of the pipeline."""

    result: SimResult
    planned: PlannedRest
    warmup: np.ndarray  # request indices run first
    settings: EngineSettings
    replanned_at_step: int | None  # engine step of the re-plan (None: no warm-up)
    feed: FeedChoice  # how the re-planned requests were fed

    @property
    def plan(self) -> Plan:
        return self.planned.plan


DEFAULT_MAX_TOKENS = 512  # the output limit of requests whose workload names none


def visible_requests(
    workload: Workload, *, oracle: bool = False, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> list[PlanRequest]:
    """What planners may see: prompts and max_tokens (true lengths only for an oracle)."""
    out = []
    for request, limit in zip(workload.requests, workload.max_tokens, strict=True):
        max_tokens = default_max_tokens if limit is None else limit
        known = request.output_len if oracle else None
        out.append(PlanRequest(request.request_id, request.prompt_token_ids, max_tokens, known))
    return out


class PipelineSimulator:
    """One workload, one planner: the pipeline's runs under any engine settings."""

    def __init__(
        self,
        workload: Workload,
        planner: Planner,
        cost: CostModel,
        *,
        seed: int = 0,
        oracle: bool = False,
        warmup_fraction: float = WARMUP_FRACTION,
        dual_scan: DualScanOptions | None = None,
        engine: SimulatedEngine | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        search_workers: int | None = None,
    ) -> None:
        self.workload, self.planner, self.cost = workload, planner, cost
        self.dual_scan = dual_scan
        self.search_workers = search_workers  # processes of the settings search (None: auto)
        self.engine = engine or SimulatedEngine(DEFAULT_ENGINE_SETTINGS)
        self._prompts = [r.prompt_token_ids for r in workload.requests]
        self._visible = visible_requests(
            workload, oracle=oracle, default_max_tokens=default_max_tokens
        )
        first = estimate_outputs(self._visible)
        trie = build_compact_trie(self._prompts)
        self.warmup = select_warmup(trie, first.measured(), warmup_fraction, seed)
        is_warmup = np.zeros(len(self._prompts), dtype=bool)
        is_warmup[self.warmup] = True
        self.rest = np.flatnonzero(~is_warmup)
        self._rest_visible = [self._visible[i] for i in self.rest.tolist()]

    def plan_rest(self, hints: Sequence[LengthHint] = ()) -> PlannedRest:
        """Estimate and plan the requests after the warm-up, knowing `hints`."""
        started = time.perf_counter()
        estimates = estimate_outputs(self._rest_visible, hints)
        plan = self.planner.plan(self._rest_visible, estimates)
        max_tokens = np.fromiter((r.max_tokens for r in self._rest_visible), np.int64)
        return PlannedRest(self.rest, plan, estimates, time.perf_counter() - started, max_tokens)

    def policy(
        self, planned: PlannedRest, settings: EngineSettings, feed: FeedChoice | None = None
    ) -> AdmissionPolicy:
        """The admission of the re-planned requests: the plan's own, or `feed`'s."""
        options = self.dual_scan or DualScanOptions()
        feed = feed or FeedChoice(planned.plan.admission, pace=options.pace)
        ordered = planned.ordered
        estimates, spread = planned.ordered_estimates, planned.ordered_spread
        guarded = guard_order(feed, [self._prompts[i] for i in ordered.tolist()], estimates)
        if guarded is not None:  # a guard: the same requests in its order, fed in order
            ordered, estimates, spread = ordered[guarded], estimates[guarded], spread[guarded]
        sequence = scan_sequence(self._prompts, ordered, estimates, spread)
        options = replace(options, pace=feed.pace)
        return admission_policy(feed.admission, sequence, self.cost, settings, options)

    def admission(
        self, settings: EngineSettings, feed: FeedChoice | None = None
    ) -> tuple[AdmissionPolicy, RestOfRun | None, list[PlannedRest]]:
        """How the pipeline runs on an engine with `settings`: the warm-up's policy and the
        re-plan that makes the rest's policy when it ends (the owner's step: hand_over_if_ended),
        the re-plan appended to the returned list when it happens; fed as `feed` says (the
        plan's own admission by default). Drives the simulator here, and a real engine the
        same way (bench/fidelity.py)."""
        planned: list[PlannedRest] = []

        def rest_of_run(outcome: WarmupOutcome) -> AdmissionPolicy:
            hints = warmup_hints(self._visible, outcome)
            planned.append(self.plan_rest(hints))
            policy = self.policy(planned[0], settings, feed)
            self._adopt(policy, outcome, hints)
            return policy

        if len(self.warmup):
            window = 2 * settings.max_num_seqs
            warmup = WarmupThenRest(self.warmup.tolist(), len(self.rest), window)
            return warmup, rest_of_run, planned
        planned.append(self.plan_rest())
        return self.policy(planned[0], settings, feed), None, planned

    def _adopt(
        self, policy: AdmissionPolicy, outcome: WarmupOutcome, hints: Sequence[LengthHint]
    ) -> None:
        """The warm-up requests still running, with the estimates the re-plan makes of them,
        handed to the policy (its KV projection counts them until they end)."""
        running = sorted(outcome.running)
        if not running:
            return
        estimates = estimate_outputs([self._visible[i] for i in running], hints)
        adopt_running(
            policy,
            {
                i: (float(t), float(s))
                for i, t, s in zip(running, estimates.tokens, estimates.spread, strict=True)
            },
            {i: float(len(self._prompts[i])) for i in running},
        )

    def run(self, settings: EngineSettings, feed: FeedChoice | None = None) -> PipelineRun:
        """Warm-up, re-plan, run: the whole workload on an engine with `settings`."""
        engine = replace(self.engine, settings=settings)
        policy, rest_of_run, planned = self.admission(settings, feed)
        result = simulate_online(
            self.workload.requests, policy, self.cost, engine.config(), rest_of_run=rest_of_run
        )
        replanned = policy.replanned_at_step if isinstance(policy, WarmupThenRest) else None
        chosen = feed or FeedChoice(
            planned[0].plan.admission, pace=(self.dual_scan or DualScanOptions()).pace
        )
        return PipelineRun(result, planned[0], self.warmup, settings, replanned, chosen)

    def search(
        self,
        planned: PlannedRest,
        running: EngineSettings,
        *,
        memory_centric: int | None,
        max_model_len: int,
    ) -> PlanSearch:
        """The pipeline's search for `planned` (settings_search.py): its requests at lengths
        drawn from their estimates (what the pipeline knows after the warm-up)."""
        inputs = SearchInputs(
            prompts=[self._prompts[i] for i in planned.ordered.tolist()],
            estimates=planned.ordered_estimates,
            spread=planned.ordered_spread,
            max_tokens=planned.ordered_max_tokens,
            admission=planned.plan.admission,
            residuals=planned.estimates.residuals,
            guessed=planned.estimates.guessed[np.asarray(planned.plan.order, dtype=np.int64)],
            dual_scan=self.dual_scan or DualScanOptions(),
        )
        return search_plan(
            inputs,
            self.cost,
            running,
            self.engine.config(),
            memory_centric=memory_centric,
            max_model_len=max_model_len,
            workers=self.search_workers,
        )


def simulate_pipeline(
    workload: Workload,
    planner: Planner,
    cost: CostModel,
    engine: SimulatedEngine,
    *,
    seed: int = 0,
    oracle: bool = False,
    warmup_fraction: float = WARMUP_FRACTION,
    dual_scan: DualScanOptions | None = None,
) -> PipelineRun:
    """Warm-up, re-plan, run, with `engine`'s settings (module invariant)."""
    simulator = PipelineSimulator(
        workload,
        planner,
        cost,
        seed=seed,
        oracle=oracle,
        warmup_fraction=warmup_fraction,
        dual_scan=dual_scan,
        engine=engine,
    )
    return simulator.run(engine.settings)


def warmup_hints(visible: Sequence[PlanRequest], outcome: WarmupOutcome) -> list[LengthHint]:
    """The warm-up's measurements as hints: finished lengths, and lower bounds of the rest."""
    hints = [
        LengthHint(visible[i].prompt_token_ids, tokens, EstimateSource.WARMUP)
        for i, tokens in outcome.finished.items()
    ]
    hints += [
        LengthHint(
            visible[i].prompt_token_ids,
            max(1, tokens),
            EstimateSource.WARMUP,
            censored=True,
            max_tokens=visible[i].max_tokens,
        )
        for i, tokens in outcome.running.items()
    ]
    return hints
