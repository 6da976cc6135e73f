"""The stages' reports in words: the lines `blend` prints after each stage, and the lines the
Prefect flows write to the flow run's log (flows/logs.py). Plain text, so either front end
styles them its own way; the first line of a stage starts with the stage's name.

The report types are imported for type checking only: the command line imports this module
at start, and the profile stage's module imports the tokenizer library (seconds)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from blend.execute.stage import RunReport
    from blend.ingest import IngestReport
    from blend.plan.capacity import CapacityReport
    from blend.plan.stage import PlanReport
    from blend.profile.stage import ProfileReport
    from blend.simulate.sequential_bound import EstimatedBounds


@dataclass(frozen=True, slots=True)
class StageLine:
    text: str
    warning: bool = False  # something the user should act on (a terminal shows it in yellow)


def ingest_lines(r: IngestReport) -> list[StageLine]:
    state = "already ingested (same file)" if r.reused else "ingested"
    lines = [
        StageLine(
            f"ingest {state}: dataset {r.dataset!r} snapshot {r.snapshot} "
            f"({r.source_format}): {r.n_rows} prompts, {r.n_rejected} rejected"
        )
    ]
    lines += [
        StageLine(f"  rejected {count} x {reason}")
        for reason, count in sorted(r.reject_reasons.items())
    ]
    if r.n_named_model:
        names = ", ".join(f"{name} x {n}" for name, n in r.named_models.items())
        more = ", ..." if sum(r.named_models.values()) < r.n_named_model else ""
        lines.append(
            StageLine(
                f"  {r.n_named_model} lines name a model in body.model ({names}{more}); "
                "blend answers them with the run's model (--model) instead"
            )
        )
    return lines


def profile_lines(r: ProfileReport) -> list[StageLine]:
    if r.n_prompts == 0:
        return [StageLine(f"profile snapshot {r.snapshot} of {r.dataset!r} has no prompts")]
    lines = [
        StageLine(
            f"profile {r.n_prompts} prompts, {r.input_tokens:,} tokens; "
            f"length mean {r.mean_tokens:.0f} p50 {r.p50_tokens:.0f} p90 {r.p90_tokens:.0f} "
            f"p99 {r.p99_tokens:.0f} max {r.max_tokens}; over max_model_len {r.max_model_len}: "
            f"{r.n_over_length}; prefix sharing {r.sharing_ratio:.1%}"
        )
    ]
    if r.n_over_length:
        more = ", ..." if r.n_over_length > len(r.over_length_ids) else ""
        lines.append(
            StageLine(
                f"  {r.n_over_length} prompts leave no room for output within max_model_len "
                f"{r.max_model_len} (they will be error rows, not sent to the engine): "
                f"{', '.join(r.over_length_ids)}{more}",
                warning=True,
            )
        )
    lines += [
        StageLine(
            f"  shared prefix group {g.rank}: {g.n_prompts} prompts x "
            f"{g.shared_prefix_tokens} tokens (first {g.first_request_id})"
        )
        for g in r.top_groups[:5]
    ]
    lines += [
        StageLine(
            f"  request class {c.name}: {c.n_requests} prompts, mean {c.prompt_tokens:,.0f} "
            f"prompt + {c.output_tokens:,.0f} estimated output tokens"
        )
        for c in r.request_classes
    ]
    return lines


def plan_lines(r: PlanReport) -> list[StageLine]:
    done = f" ({r.n_already_done} already answered, left out)" if r.n_already_done else ""
    lines = [
        StageLine(
            f"plan {r.plan_id}: {r.planner} ({r.admission} admission), "
            f"{r.n_requests} requests{done}, {r.n_warmup} of them first as a warm-up; keeps "
            f"{r.sharing_ratio:.1%} prefix sharing (tree: {r.dfs_sharing_ratio:.1%}); planned "
            f"in {r.plan_seconds:.2f} s for {r.model_spec} on {r.hardware}"
        )
    ]
    if r.n_over_length:
        lines.append(
            StageLine(
                f"  {r.n_over_length} of them leave no room for output within max_model_len "
                f"{r.max_model_len}: last in the plan, not priced (they will be error rows)",
                warning=True,
            )
        )
    if r.engine is not None:
        sources = ", ".join(f"{n} {k}" for k, n in sorted(r.estimate_sources.items()))
        lines.append(
            StageLine(
                f"  engine: {r.engine.label()} ({r.engine.source}); output estimates: {sources}"
            )
        )
    if r.bounds is not None:
        lines.append(StageLine(f"  {bounds_line(r.bounds)}"))
    return lines


def bounds_line(bounds: EstimatedBounds) -> str:
    """The plan's bounds in words: T_seq first (the engine blend runs), T_opt beside it."""
    steps = f" in at least {bounds.n_min_steps:,} steps" if bounds.n_min_steps else ""
    return (
        f"lower bounds at the estimated lengths: T_seq {bounds.t_seq_s:,.1f} s{steps} (vLLM: "
        f"attention after the GEMMs), T_opt {bounds.t_opt_s:,.1f} s (an engine that overlaps "
        "them); they hold as far as the estimates do"
    )


def run_lines(r: RunReport) -> list[StageLine]:
    hit = "n/a" if r.prefix_cache_hit_rate is None else f"{r.prefix_cache_hit_rate:.1%}"
    lines = [
        StageLine(
            f"execute {r.run_id} {r.status}: {r.n_requests} rows ({r.n_errors} errors), "
            f"{r.input_tokens:,} prompt + {r.output_tokens:,} output tokens, "
            f"{r.cached_tokens:,} cached (hit rate {hit}); engine start "
            f"{r.engine_start_s:.1f} s, wall {r.wall_s:.1f} s, {r.tokens_per_second:,.0f} tok/s"
        )
    ]
    note = r.cache_note()  # why "0 cached" beside a dataset's prefix sharing
    if note is not None:
        lines.append(StageLine(f"  {note}"))
    replan = r.replan
    if replan is not None:
        search, restart = replan.settings_search, replan.restart_settings
        gain = None if search is None else search.predicted_gain_s
        lines.append(
            StageLine(
                f"  re-planned after the warm-up ({replan.warmup_finished} measured, "
                f"{replan.warmup_running} still running): {replan.n_replanned} requests, "
                f"{replan.admission} admission; settings search: "
                + ("kept the engine's" if restart is None else f"restarted with {restart.label()}")
                + ("" if gain is None else f" (predicted gain {gain:.1f} s)")
            )
        )
    if r.estimates:
        lines.append(
            StageLine(
                "  output estimates vs actual (largest prefix groups; view estimate_accuracy):"
            )
        )
        lines += [
            StageLine(
                f"    {g.prefix_group or '(no group)'}: {g.n_requests} requests, estimated "
                f"{g.mean_estimate:,.0f} ({g.est_source}), actual {g.mean_actual:,.0f} tokens"
            )
            for g in r.estimates
        ]
    return lines


def capacity_lines(r: CapacityReport) -> list[StageLine]:
    return [StageLine(f"capacity: {line}") for line in r.summary()]


_LINES: dict[str, Callable[[Any], list[StageLine]]] = {
    "ingest": ingest_lines,
    "profile": profile_lines,
    "plan": plan_lines,
    "capacity": capacity_lines,
    "execute": run_lines,
}


def stage_lines(stage: str, report: object) -> list[StageLine]:
    """The lines of `report`, what blend.pipeline.chain's stage `stage` returned (the names
    it gives `on_stage`); none for a stage without words."""
    lines = _LINES.get(stage)
    return lines(report) if lines is not None else []


__all__ = [
    "StageLine",
    "bounds_line",
    "capacity_lines",
    "ingest_lines",
    "plan_lines",
    "profile_lines",
    "run_lines",
    "stage_lines",
]
