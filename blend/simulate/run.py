"""Plan a workload and simulate it the way the pipeline runs it: what `blend simulate` reports.

The engine runs with the settings the executor would use: explicit ones, else vLLM's offline
defaults for the hardware, else (with `search`) the best candidate the pipeline's own search
picks after the warm-up, from estimated lengths only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from blend.cost.model import CostModel
from blend.engines.settings import (
    EngineSettings,
    memory_centric_seqs,
    vllm_default_settings,
)
from blend.planners import make_planner
from blend.planners.tree import order_sharing_ratio
from blend.simulate.gap import GapBreakdown, SequentialGap, gap_breakdown, sequential_gap
from blend.simulate.io import Workload
from blend.simulate.optimal import dfs_sharing_ratio, optimal_makespan_s
from blend.simulate.pipeline import (
    DEFAULT_MAX_TOKENS,
    PipelineRun,
    PipelineSimulator,
    SimulatedEngine,
)
from blend.simulate.sequential_bound import SequentialBound, sequential_bound
from blend.simulate.settings_search import PlanSearch


@dataclass(frozen=True, slots=True)
class SimulationReport:
    planner: str
    run: PipelineRun
    optimal_makespan_s: float  # T_opt at the effective rates the cost model uses (s)
    peak_optimal_makespan_s: float  # T_opt at the datasheet's peak rates (s)
    dfs_sharing_ratio: float  # prefix sharing of the prompt trie
    merged_sharing_ratio: float  # prefix sharing of the order the engine really saw
    simulate_seconds: float  # wall time of the whole simulation (s)
    oracle_lengths: bool  # whether the planner saw the true output lengths
    gap: GapBreakdown  # the makespan as T_opt plus the causes of the gap
    search: PlanSearch | None  # the search, when one chose the feed and settings
    searched: bool  # a search was asked for (none runs on max_tokens-only estimates)
    t_seq: SequentialBound  # T_seq, the bound of the engine blend runs (vLLM)
    t_seq_gap: SequentialGap  # the makespan as T_seq plus the causes of the gap

    def to_json(self) -> dict[str, Any]:
        r, settings = self.run.result, self.run.settings
        return {
            "planner": self.planner,
            "n_requests": r.admission_order.size,
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "makespan_s": r.makespan_s,
            "throughput_tok_s": r.throughput_tok_s,
            "t_seq_makespan_s": self.t_seq.makespan_s,
            "fraction_of_t_seq": _fraction(self.t_seq.makespan_s, r.makespan_s),
            "t_seq": self.t_seq.to_json(),
            "t_seq_gap": self.t_seq_gap.to_json(),
            # T_opt: the bound of an engine that overlaps GEMMs with attention (not vLLM)
            "optimal_makespan_s": self.optimal_makespan_s,
            "fraction_of_optimal": _fraction(self.optimal_makespan_s, r.makespan_s),
            "peak_optimal_makespan_s": self.peak_optimal_makespan_s,
            "fraction_of_peak_optimal": _fraction(self.peak_optimal_makespan_s, r.makespan_s),
            "prefix_sharing_ratio": (
                r.prefix_cache_hit_tokens / r.input_tokens if r.input_tokens else 0.0
            ),
            "dfs_prefix_sharing_ratio": self.dfs_sharing_ratio,
            "merged_order_sharing_ratio": self.merged_sharing_ratio,
            "plan_seconds": self.run.planned.plan_seconds,
            "simulate_seconds": self.simulate_seconds,
            "oracle_lengths": self.oracle_lengths,
            "max_num_batched_tokens": settings.max_num_batched_tokens,
            "max_num_seqs": settings.max_num_seqs,
            "settings_source": settings.source.value,
            "admission": self.run.plan.admission.value,
            "feed": self.run.feed.label(),
            "n_warmup": int(self.run.warmup.size),
            "estimate_sources": self.run.planned.estimates.source_counts(),
            "n_steps": r.n_steps,
            "prefix_cache_hit_tokens": r.prefix_cache_hit_tokens,
            **r.breakdown(),
            "gap": self.gap.to_json(),
            "settings_search": None if self.search is None else self.search.to_json(),
            "settings_search_note": self._search_note(),
        }

    def _search_note(self) -> str | None:
        if self.searched and self.search is None:
            return "estimates are only max_tokens: no search, vLLM's defaults kept"
        if self.search is None:
            return None
        best = self.search.best
        sampled = self.search.n_simulated < self.search.n_requests
        return (
            f"predicted {best.makespan_s:.1f} s at {best.settings.label()}, {best.feed.label()}"
            + (f" (a sample of {self.search.n_simulated} requests)" if sampled else "")
        )


def _fraction(bound_s: float, makespan_s: float) -> float:
    return bound_s / makespan_s if makespan_s > 0 else 0.0


def default_settings(workload: Workload, cost: CostModel, chunked_prefill: bool) -> EngineSettings:
    """vLLM's offline defaults for this hardware (what the executor runs without a search)."""
    longest = max(len(r.prompt_token_ids) + r.output_len for r in workload.requests)
    settings = vllm_default_settings(
        cost.hardware, max_model_len=longest, tensor_parallel_size=cost.tensor_parallel_size
    )
    return EngineSettings(
        settings.max_num_batched_tokens, settings.max_num_seqs, chunked_prefill
    ).validated(longest)


def plan_and_simulate(
    workload: Workload,
    planner_name: str,
    cost: CostModel,
    engine: SimulatedEngine,
    *,
    seed: int = 0,
    oracle_lengths: bool = False,
    search: bool = False,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
) -> SimulationReport:
    """Warm-up, re-plan and run the workload with `planner_name` on `engine` (with `search`:
    on the settings the pipeline's search picks after the warm-up)."""
    started = time.perf_counter()
    planner = make_planner(planner_name, seed=seed, cost=cost)
    simulator = PipelineSimulator(
        workload,
        planner,
        cost,
        seed=seed,
        oracle=oracle_lengths,
        engine=engine,
        default_max_tokens=default_max_tokens,
    )
    run = simulator.run(engine.settings)
    settings_search = None
    if search and run.planned.informed:
        settings_search = search_after_warmup(simulator, run, cost)
        best = settings_search.best
        if best.settings != engine.settings or best.feed != run.feed:
            run = simulator.run(best.settings, best.feed)
    requests = workload.requests
    sharing = dfs_sharing_ratio(requests)
    optimal_s = optimal_makespan_s(requests, cost, sharing)
    bound = sequential_bound(requests, cost, engine.kv_capacity_tokens)
    return SimulationReport(
        planner=str(planner.name),
        run=run,
        optimal_makespan_s=optimal_s,
        peak_optimal_makespan_s=optimal_makespan_s(requests, cost, sharing, peak=True),
        dfs_sharing_ratio=sharing,
        merged_sharing_ratio=order_sharing_ratio(
            [r.prompt_token_ids for r in requests], run.result.admission_order.tolist()
        ),
        simulate_seconds=time.perf_counter() - started,
        oracle_lengths=oracle_lengths,
        gap=gap_breakdown(run.result, requests, cost, sharing, optimal_s),
        search=settings_search,
        searched=search,
        t_seq=bound,
        t_seq_gap=sequential_gap(run.result, bound, cost),
    )


def search_after_warmup(
    simulator: PipelineSimulator, run: PipelineRun, cost: CostModel
) -> PlanSearch:
    """The pipeline's search (settings_search.py) of the run's re-planned requests, around
    the settings the run had."""
    planned = run.planned
    prompts = [simulator.workload.requests[i].prompt_token_ids for i in planned.ordered]
    footprint = float(np.mean([len(p) for p in prompts]) + planned.estimates.tokens.mean() / 2)
    longest = max(len(p) for p in prompts) + int(planned.max_tokens.max()) + 1
    capacity = simulator.engine.kv_capacity_tokens or cost.kv_capacity_tokens
    return simulator.search(
        planned,
        run.settings,
        memory_centric=memory_centric_seqs(capacity, footprint),
        max_model_len=longest,
    )
