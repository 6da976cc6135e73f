"""Choose a plan's engine settings by simulating it under each candidate.

Invariant: the search sees only what the pipeline knows when it runs: the planner's order and
the estimated output lengths (never the true ones, which a benchmark may pass separately to
find the best settings in hindsight). Every candidate runs the same plan with the same
admission policy; the fastest simulated makespan wins, ties to the earlier candidate (the
default first). Requests are the simulator's, so estimated lengths are rounded and floored at
one token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from blend.admission.base import AdmissionKind
from blend.admission.dual_scan import DualScanOptions
from blend.admission.factory import admission_policy
from blend.cost import CostModel
from blend.engine_settings import EngineSettings
from blend.simulate.types import SimConfig, SimRequest, SimResult


@dataclass(frozen=True, slots=True)
class SettingsTrial:
    settings: EngineSettings
    makespan_s: float  # simulated, with the lengths the search was given
    n_preemptions: int


@dataclass(frozen=True, slots=True)
class SettingsSearch:
    best: EngineSettings
    trials: list[SettingsTrial]  # in candidate order

    def makespan_of(self, settings: EngineSettings) -> float:
        for trial in self.trials:
            if trial.settings == settings:
                return trial.makespan_s
        raise KeyError(settings.label())

    def to_json(self) -> list[dict[str, object]]:
        return [
            {
                "max_num_batched_tokens": t.settings.max_num_batched_tokens,
                "max_num_seqs": t.settings.max_num_seqs,
                "makespan_s": t.makespan_s,
                "n_preemptions": t.n_preemptions,
            }
            for t in self.trials
        ]


def with_lengths(requests: Sequence[SimRequest], lengths: np.ndarray) -> list[SimRequest]:
    """The requests with these output lengths (rounded, at least 1): what a search may assume."""
    rounded = np.maximum(1, np.rint(np.asarray(lengths, dtype=np.float64))).astype(np.int64)
    return [
        SimRequest(r.request_id, r.prompt_token_ids, int(d))
        for r, d in zip(requests, rounded.tolist(), strict=True)
    ]


def search_settings(
    candidates: Sequence[EngineSettings],
    run: Callable[[EngineSettings], SimResult],
) -> SettingsSearch:
    """Simulate `run(settings)` for every candidate and keep the fastest."""
    if not candidates:
        raise ValueError("no engine settings to search among")
    trials = []
    for settings in candidates:
        result = run(settings)
        trials.append(SettingsTrial(settings, result.makespan_s, result.n_preemptions))
    best = min(trials, key=lambda t: t.makespan_s)  # min keeps the first of equal ones
    return SettingsSearch(best.settings, trials)


def search_order_settings(
    requests: Sequence[SimRequest],
    estimates: np.ndarray,
    admission: AdmissionKind,
    cost: CostModel,
    candidates: Sequence[EngineSettings],
    template: SimConfig,
    dual_scan: DualScanOptions | None = None,
    spread: np.ndarray | None = None,
) -> SettingsSearch:
    """The best candidate for running `requests` in this order (the plan order) with this
    admission, at their estimated output lengths; `template` gives the engine's other
    settings (KV capacity, block size, prefix caching); `spread`: of each estimate, as
    admission sees it (the simulated lengths are the estimates themselves)."""
    from blend.simulate.engine import simulate_online
    from blend.simulate.pipeline import scan_sequence

    assumed = with_lengths(requests, estimates)
    prompts = [r.prompt_token_ids for r in assumed]
    in_order = np.arange(len(assumed))

    def run(settings: EngineSettings) -> SimResult:
        sequence = scan_sequence(prompts, in_order, np.asarray(estimates, dtype=np.float64), spread)
        policy = admission_policy(admission, sequence, cost, settings, dual_scan)
        config = replace(
            template,
            max_num_batched_tokens=settings.max_num_batched_tokens,
            max_num_seqs=settings.max_num_seqs,
            chunked_prefill=settings.chunked_prefill,
        )
        return simulate_online(assumed, policy, cost, config)

    return search_settings(candidates, run)
