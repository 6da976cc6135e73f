"""Simulate k data-parallel engines on one workload: one warm-up, one plan, k shares.

Invariant: the engines run the pipeline of one engine (blend/simulate/pipeline.py) with its
warm-up spread over them: the warm-up sample (estimates.select_warmup over the whole
workload) is dealt round-robin, each engine runs its part first, the re-plan of all other
requests uses every engine's measurements (finished lengths, running ones as lower bounds),
and the plan's sequence is split into k shares that each engine's dual scan admits. Planner
and split see only what the pipeline knows (never the true lengths). Simulated in two
passes: the first runs each engine's warm-up to its re-plan point to collect the outcomes,
the second runs each engine from the start (its warm-up replays exactly) and hands over its
share at the re-plan. Engines share nothing (prefix cache, KV): the makespan is the slowest
engine's. k = 1 is exactly the single-engine pipeline. Simplification: an engine re-plans at
its own re-plan step with every engine's outcome (in a real run it would wait for the last
engine's warm-up; the warm-ups are of equal size). Splits compared on the same plan:
  blendserve   BlendServe's DP split (blend/scale/engine_split.py): balanced Comp and
               Mem per engine, prefix groups kept together
  round-robin  plan position i to engine i mod k
  random       a seeded random partition into k shares of equal count
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from blend.admission.base import AdmissionPolicy, InOrderAdmission
from blend.admission.dual_scan import DualScanOptions, ScanSequence, scan_sequence
from blend.admission.factory import admission_policy
from blend.admission.warmup import WarmupOutcome, WarmupThenRest
from blend.cost.model import CostModel
from blend.planners import LengthHint, estimate_outputs, make_planner, select_warmup
from blend.planners.base import AdmissionKind
from blend.planners.estimates import WARMUP_FRACTION
from blend.planners.tree import build_compact_trie
from blend.scale.engine_split import split_for_engines
from blend.simulate.engine import simulate_online
from blend.simulate.io import Workload
from blend.simulate.pipeline import (
    DEFAULT_MAX_TOKENS,
    SimulatedEngine,
    visible_requests,
    warmup_hints,
)
from blend.simulate.types import SimResult

SPLITS = ("blendserve", "round-robin", "random")


@dataclass(frozen=True, slots=True)
class EngineShare:
    """One engine's requests (its warm-up part, then its share) and its simulated run."""

    warmup: np.ndarray  # int64 request indices of its part of the warm-up, in run order
    requests: np.ndarray  # int64 request indices of its share, in plan order
    result: SimResult | None  # None: an engine with nothing to run
    replanned_at_step: int | None  # its engine step at the re-plan (None: no warm-up)

    @property
    def makespan_s(self) -> float:
        return 0.0 if self.result is None else self.result.makespan_s


@dataclass(frozen=True, slots=True)
class MultiEngineRun:
    """k engines' simulated runs of one workload."""

    k: int
    split: str
    shares: list[EngineShare]
    tokens: int  # prompt + output tokens of the whole workload

    @property
    def makespan_s(self) -> float:
        """The slowest engine's makespan (s)."""
        return max(share.makespan_s for share in self.shares)

    @property
    def throughput_tok_s(self) -> float:
        makespan = self.makespan_s
        return self.tokens / makespan if makespan > 0 else 0.0

    @property
    def imbalance(self) -> float:
        """Slowest engine's makespan over the mean engine's (1: perfectly even)."""
        spans = np.array([share.makespan_s for share in self.shares])
        return float(spans.max() / spans.mean()) if spans.mean() > 0 else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "split": self.split,
            "makespan_s": self.makespan_s,
            "throughput_tok_s": self.throughput_tok_s,
            "imbalance": self.imbalance,
            "engine_makespans_s": [share.makespan_s for share in self.shares],
            "engine_requests": [len(s.warmup) + len(s.requests) for s in self.shares],
        }


@dataclass(frozen=True, slots=True)
class GlobalPlan:
    """The warm-up sample and the plan of every other request, made with what it measured."""

    warmup: np.ndarray  # int64 request indices of the warm-up sample, in run order
    sequence: ScanSequence  # the re-plan's sequence (request indices, estimates)
    admission_kind: AdmissionKind  # how the plan feeds each engine


def split_positions(
    sequence: ScanSequence, cost: CostModel, k: int, split: str = "blendserve", seed: int = 0
) -> list[np.ndarray]:
    """k shares of positions into `sequence`, each ascending (module invariant: `split`)."""
    n = len(sequence.index)
    if k < 1:
        raise ValueError(f"k must be >= 1 engines, got {k}")
    if split == "blendserve":
        return split_for_engines(sequence, cost, k)
    if split == "round-robin":
        return [np.arange(e, n, k, dtype=np.int64) for e in range(k)]
    if split == "random":
        permutation = np.random.default_rng(seed).permutation(n)
        return [np.sort(part).astype(np.int64) for part in np.array_split(permutation, k)]
    raise ValueError(f"unknown split {split!r}: known {', '.join(SPLITS)}")


class MultiEngineSimulator:
    """One workload on k engines with `engine`'s settings (module invariant)."""

    def __init__(
        self,
        workload: Workload,
        cost: CostModel,
        engine: SimulatedEngine,
        *,
        planner: str = "blendserve",
        seed: int = 0,
        warmup_fraction: float = WARMUP_FRACTION,
        dual_scan: DualScanOptions | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        history: Sequence[LengthHint] = (),
    ) -> None:
        """`history`: lengths measured before this run (earlier results of the dataset), as
        the plan stage passes them to the estimates."""
        if not workload.requests:
            raise ValueError("multi-engine simulation: the workload has no requests")
        self.workload, self.cost, self.engine = workload, cost, engine
        self.planner_name, self.seed, self.dual_scan = planner, seed, dual_scan
        self._prompts = [r.prompt_token_ids for r in workload.requests]
        self._visible = visible_requests(workload, default_max_tokens=default_max_tokens)
        self.history = list(history)
        first = estimate_outputs(self._visible, self.history)
        trie = build_compact_trie(self._prompts)
        self.warmup = select_warmup(trie, first.measured(), warmup_fraction, seed)
        is_warmup = np.zeros(len(self._prompts), dtype=bool)
        is_warmup[self.warmup] = True
        self.rest = np.flatnonzero(~is_warmup)
        self.tokens = sum(
            len(p) + r.output_len for p, r in zip(self._prompts, workload.requests, strict=True)
        )
        self._plans: dict[int, GlobalPlan] = {}

    def warmup_parts(self, k: int) -> list[np.ndarray]:
        """The warm-up sample dealt round-robin to k engines."""
        return [self.warmup[e::k] for e in range(k)]

    def plan(self, k: int) -> GlobalPlan:
        """Pass one: every engine's warm-up part up to its re-plan point, then the re-plan of
        the rest from all their measurements (cached per k)."""
        if k in self._plans:
            return self._plans[k]
        finished: dict[int, int] = {}
        running: dict[int, int] = {}
        for part in self.warmup_parts(k):
            if len(part) == 0:
                continue
            outcome = self._run(part, None).outcome
            if outcome is not None:
                finished.update(outcome.finished)
                running.update(outcome.running)
        rest_visible = [self._visible[i] for i in self.rest.tolist()]
        hints = self.history + warmup_hints(self._visible, WarmupOutcome(finished, running, 0))
        estimates = estimate_outputs(rest_visible, hints)
        planner = make_planner(self.planner_name, seed=self.seed, cost=self.cost)
        plan = planner.plan(rest_visible, estimates)
        order = np.asarray(plan.order, dtype=np.int64)
        sequence = scan_sequence(
            self._prompts, self.rest[order], estimates.tokens[order], estimates.spread[order]
        )
        self._plans[k] = GlobalPlan(self.warmup, sequence, plan.admission)
        return self._plans[k]

    def run(self, k: int, split: str = "blendserve") -> MultiEngineRun:
        """Pass two: each engine runs its warm-up part, then its `split` share of the plan."""
        plan = self.plan(k)
        positions = split_positions(plan.sequence, self.cost, k, split, self.seed)
        shares = []
        for part, share in zip(self.warmup_parts(k), positions, strict=True):
            if len(part) == 0 and len(share) == 0:
                shares.append(EngineShare(part, share, None, None))
                continue
            run = self._run(part, _subsequence(plan.sequence, share, self._prompts), plan)
            requests = plan.sequence.index[share]
            shares.append(EngineShare(part, requests, run.result, run.replanned_at_step))
        return MultiEngineRun(k, split, shares, self.tokens)

    def _run(
        self, part: np.ndarray, share: ScanSequence | None, plan: GlobalPlan | None = None
    ) -> _EngineRun:
        """One engine: its warm-up `part` (request indices), then `share` (None: nothing,
        the warm-up alone, to see its outcome)."""
        n_share = 0 if share is None else len(share.index)
        rest = np.zeros(0, dtype=np.int64) if share is None else share.index
        mine = np.concatenate((part, rest)).astype(np.int64)
        requests = [self.workload.requests[i] for i in mine.tolist()]
        local = np.arange(len(part), len(mine), dtype=np.int64)  # the share's local indices
        settings = self.engine.settings
        seen: list[WarmupOutcome] = []

        def replan(outcome: WarmupOutcome) -> AdmissionPolicy:
            seen.append(_globalised(outcome, mine))
            if share is None or plan is None:
                return InOrderAdmission([], window=1)
            local_share = ScanSequence(
                local,
                share.prompt_tokens,
                share.shared_prev,
                share.output_tokens,
                share.output_spread,
            )
            return admission_policy(
                plan.admission_kind, local_share, self.cost, settings, self.dual_scan
            )

        policy: AdmissionPolicy
        if len(part):
            window = 2 * settings.max_num_seqs
            # the warm-up part comes first in `requests`: local indices 0 .. len(part) - 1
            # alone, it still counts one request to come, so the simulator keeps asking it
            # after every finish and the re-plan point is the one it has with a share
            n_rest = n_share if share is not None else 1
            policy = WarmupThenRest(list(range(len(part))), n_rest, window)
        else:
            policy = replan(WarmupOutcome({}, {}, 0))
            seen.clear()
        result = simulate_online(
            requests, policy, self.cost, self.engine.config(), rest_of_run=replan
        )
        step = policy.replanned_at_step if isinstance(policy, WarmupThenRest) else None
        return _EngineRun(result, seen[0] if seen else None, step)


@dataclass(frozen=True, slots=True)
class _EngineRun:
    result: SimResult
    outcome: WarmupOutcome | None  # the warm-up's outcome, in workload indices
    replanned_at_step: int | None


def _globalised(outcome: WarmupOutcome, mine: np.ndarray) -> WarmupOutcome:
    """An outcome keyed by local request indices, keyed by workload indices."""
    return WarmupOutcome(
        {int(mine[i]): t for i, t in outcome.finished.items()},
        {int(mine[i]): t for i, t in outcome.running.items()},
        outcome.step,
    )


def _subsequence(
    sequence: ScanSequence, positions: np.ndarray, prompts: Sequence[np.ndarray | Sequence[int]]
) -> ScanSequence:
    """The positions of `sequence` as a sequence of their own (shared_prev between the new
    neighbours)."""
    spread = np.asarray(sequence.output_spread, dtype=np.float64)
    return scan_sequence(
        prompts, sequence.index[positions], sequence.output_tokens[positions], spread[positions]
    )
