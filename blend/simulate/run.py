"""Plan a workload with a planner and simulate the plan: what `blend simulate` reports."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from blend.cost import CostModel
from blend.planners import Plan, PlanRequest, StepBudgets, make_planner
from blend.planners.blendserve import reveal_warmup
from blend.simulate.engine import simulate
from blend.simulate.gap import GapBreakdown, gap_breakdown
from blend.simulate.io import Workload
from blend.simulate.optimal import dfs_sharing_ratio, optimal_makespan_s
from blend.simulate.types import SimConfig, SimResult

WARMUP_FRACTION = 0.01  # share of requests whose lengths a non-oracle planner learns first


@dataclass(frozen=True, slots=True)
class SimulationReport:
    planner: str
    plan: Plan
    result: SimResult
    optimal_makespan_s: float  # T_opt (s)
    dfs_sharing_ratio: float  # prefix sharing of the prompt trie
    plan_seconds: float  # wall time the planner took (s)
    simulate_seconds: float  # wall time the simulator took (s)
    oracle_lengths: bool  # whether the planner saw the true output lengths
    config: SimConfig  # the engine that was simulated (the plan's budgets applied)
    gap: GapBreakdown  # the makespan as T_opt plus the causes of the gap

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "planner": self.planner,
            "n_requests": len(self.plan.order),
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "makespan_s": r.makespan_s,
            "throughput_tok_s": r.throughput_tok_s,
            "optimal_makespan_s": self.optimal_makespan_s,
            "fraction_of_optimal": (
                self.optimal_makespan_s / r.makespan_s if r.makespan_s > 0 else 0.0
            ),
            "prefix_sharing_ratio": (
                r.prefix_cache_hit_tokens / r.input_tokens if r.input_tokens else 0.0
            ),
            "dfs_prefix_sharing_ratio": self.dfs_sharing_ratio,
            "plan_seconds": self.plan_seconds,
            "simulate_seconds": self.simulate_seconds,
            "oracle_lengths": self.oracle_lengths,
            "max_num_batched_tokens": self.config.max_num_batched_tokens,
            "max_num_seqs": self.config.max_num_seqs,
            "n_steps": r.n_steps,
            "prefix_cache_hit_tokens": r.prefix_cache_hit_tokens,
            **r.breakdown(),
            "gap": self.gap.to_json(),
        }


def plan_requests(
    workload: Workload, *, oracle_lengths: bool, default_max_tokens: int, seed: int
) -> list[PlanRequest]:
    """What planners may see of the workload.

    With oracle_lengths every true output length (as output_len and max_tokens). Otherwise
    the file's max_tokens (else default_max_tokens), and the true lengths of the warm-up
    sample only: resource-aware planners run that sample first, so in a real run its lengths
    are measured before the rest is ordered; the simulation reveals them up front.
    """
    visible = []
    for request, limit in zip(workload.requests, workload.max_tokens, strict=True):
        tokens = np.asarray(request.prompt_token_ids).tolist()
        if oracle_lengths:
            visible.append(
                PlanRequest(request.request_id, tokens, request.output_len, request.output_len)
            )
        else:
            max_tokens = default_max_tokens if limit is None else limit
            visible.append(PlanRequest(request.request_id, tokens, max_tokens))
    if oracle_lengths:
        return visible
    true_lens = [r.output_len for r in workload.requests]
    return reveal_warmup(visible, true_lens, warmup_fraction=WARMUP_FRACTION, seed=seed)


def plan_and_simulate(
    workload: Workload,
    planner_name: str,
    cost: CostModel,
    config: SimConfig,
    *,
    seed: int = 0,
    oracle_lengths: bool = False,
    default_max_tokens: int = 512,
    plan_budgets: bool = True,
    model_spec: str | None = None,
    hardware: str | None = None,
) -> SimulationReport:
    """Order the workload with the planner, then simulate that order.

    model_spec and hardware (names or JSON paths) are what `cost` was built from; planners
    that cost requests themselves are handed them.
    """
    planner = make_planner(
        planner_name, seed=seed, model_spec=model_spec, hardware=hardware, cost=cost
    )
    visible = plan_requests(
        workload,
        oracle_lengths=oracle_lengths,
        default_max_tokens=default_max_tokens,
        seed=seed,
    )
    started = time.perf_counter()
    plan = planner.plan(visible)
    plan_seconds = time.perf_counter() - started
    sharing = dfs_sharing_ratio(workload.requests)
    if plan_budgets:  # replay the plan as the executor runs it: with the budgets it names
        config = with_step_budgets(config, StepBudgets.from_params(plan.params))
    started = time.perf_counter()
    result = simulate(workload.requests, plan.order, cost, config)
    simulate_seconds = time.perf_counter() - started
    optimal_s = optimal_makespan_s(workload.requests, cost, sharing)
    return SimulationReport(
        planner=str(plan.planner),
        plan=plan,
        result=result,
        optimal_makespan_s=optimal_s,
        dfs_sharing_ratio=sharing,
        plan_seconds=plan_seconds,
        simulate_seconds=simulate_seconds,
        oracle_lengths=oracle_lengths,
        config=config,
        gap=gap_breakdown(result, workload.requests, cost, sharing, optimal_s),
    )


def with_step_budgets(config: SimConfig, budgets: StepBudgets) -> SimConfig:
    """`config` with the budgets a plan recommends, where it recommends any."""
    return replace(
        config,
        max_num_seqs=budgets.max_num_seqs or config.max_num_seqs,
        max_num_batched_tokens=budgets.max_num_batched_tokens or config.max_num_batched_tokens,
    )
