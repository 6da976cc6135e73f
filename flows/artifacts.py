"""Prefect artifacts of a run: live progress, the run's numbers, the plan and profile summary.

The builders (`run_table`, `summary_markdown`) are pure; `publish_*` and `ProgressArtifact`
call the Prefect API. Keys are lowercase letters, digits and dashes (Prefect's rule), one
per dataset for the run table and summary, so the Artifacts page keeps each dataset's
history across nightly runs; one per plan for progress.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import cast
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from blend.execute.stage import RunReport
from blend.plan.stage import PlanReport
from blend.profile.stage import LengthBin, ProfileReport, length_histogram
from blend.store.database import Store


def artifact_key(kind: str, name: str) -> str:
    """`blend-<kind>-<name>` with every run of other characters turned into one dash."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"blend-{kind}-{name}".lower()).strip("-")
    return slug[:200]


class ProgressArtifact:
    """The executor's progress callback, mirrored into a progress artifact.

    Updates at most every `min_interval_s` seconds (each one is an API call) and always on
    the last request, so a long run costs a handful of calls a minute.
    """

    def __init__(
        self,
        plan_id: str,
        *,
        min_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._started = clock()
        self._last_update = float("-inf")
        self.num_updates = 0
        created = create_progress_artifact(
            0.0, key=artifact_key("progress", plan_id), description=f"execute {plan_id}: starting"
        )
        self.artifact_id = cast(UUID, created)  # the sync call returns the id

    def __call__(self, done: int, total: int, output_tokens: int) -> None:
        now = self._clock()
        if done < total and now - self._last_update < self._min_interval_s:
            return
        self._last_update = now
        elapsed_s = now - self._started
        rate = f"{output_tokens / elapsed_s:,.0f}" if elapsed_s > 0 else "-"
        update_progress_artifact(
            self.artifact_id,
            100.0 * done / total if total else 100.0,
            description=f"{done}/{total} requests, {output_tokens:,} output tokens, "
            f"{rate} output tok/s",
        )
        self.num_updates += 1


def run_table(run: RunReport) -> list[dict[str, object]]:
    """One row with the run's throughput, tokens, errors and prefix-cache hit rate (cached /
    prompt tokens of the run's rows: the definition `blend run` and run_summary use)."""
    hit_rate = run.prefix_cache_hit_rate
    return [
        {
            "run_id": run.run_id,
            "status": run.status,
            "requests": run.n_requests,
            "errors": run.n_errors,
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "cached_tokens": run.cached_tokens,
            "prefix_cache_hit_rate": None if hit_rate is None else round(hit_rate, 4),
            "tokens_per_s": round(run.tokens_per_second, 1),
            "output_tokens_per_s": round(run.output_tokens / run.wall_s, 1) if run.wall_s else 0,
            "engine_start_s": round(run.engine_start_s, 2),
            "wall_s": round(run.wall_s, 2),
        }
    ]


def summary_markdown(
    plan: PlanReport,
    profile: ProfileReport | None,
    run: RunReport | None,
    histogram: list[LengthBin] | None = None,
) -> str:
    """The plan summary, the profile summary (with a prompt-length chart) and the run's
    outcome as Markdown."""
    lines = [f"# blend: dataset `{plan.dataset}` snapshot {plan.snapshot}", ""]
    lines += _plan_lines(plan)
    if profile is not None:
        lines += _profile_lines(profile)
    if histogram:
        lines += _histogram_lines(histogram)
    lines += ["## Run", ""]
    if run is None:
        lines.append(
            f"Nothing to run: all {plan.n_already_done} prompts already have a result from "
            "this model with the same sampling."
        )
    else:
        row = run_table(run)[0]
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {'n/a' if v is None else v} |" for k, v in row.items()]
        note = run.cache_note()  # why "0 cached" beside the profile's prefix sharing
        if note is not None:
            lines += ["", f"Note: {note}."]
        lines += ["", f"Results: `{run.results_dir}`"]
        lines += _estimate_lines(run)
    return "\n".join(lines) + "\n"


def _estimate_lines(run: RunReport) -> list[str]:
    """Estimated against actual output tokens of the run's largest prefix groups."""
    if not run.estimates:
        return []
    lines = [
        "",
        "## Output estimates vs actual (largest prefix groups)",
        "",
        "| prefix group | requests | source | estimated | actual | mean abs. error |",
        "|---|---|---|---|---|---|",
    ]
    for g in run.estimates:
        lines.append(
            f"| {g.prefix_group or '(none)'} | {g.n_requests} | {g.est_source} | "
            f"{g.mean_estimate:,.0f} | {g.mean_actual:,.0f} | {g.mean_abs_error:,.0f} |"
        )
    return lines


def _plan_lines(plan: PlanReport) -> list[str]:
    return [
        "## Plan",
        "",
        "| | |",
        "|---|---|",
        f"| plan_id | `{plan.plan_id}` |",
        f"| planner | {plan.planner} |",
        f"| requests | {plan.n_requests} |",
        f"| already answered (left out) | {plan.n_already_done} |",
        f"| batches | {plan.n_batches} |",
        f"| prefix sharing kept | {plan.sharing_ratio:.1%} (prefix tree: "
        f"{plan.dfs_sharing_ratio:.1%}) |",
        f"| plan time | {plan.plan_seconds:.3f} s |",
        *_bound_lines(plan),
        "",
    ]


def _bound_lines(plan: PlanReport) -> list[str]:
    """T_seq (the engine blend runs: vLLM, attention after the GEMMs) and T_opt (an engine
    that overlaps them), both at the estimated output lengths."""
    if plan.bounds is None:
        return []
    return [
        f"| bound T_seq (vLLM), at the estimated lengths | {plan.bounds.t_seq_s:,.1f} s |",
        f"| bound T_opt (an overlapping engine), at the estimated lengths | "
        f"{plan.bounds.t_opt_s:,.1f} s |",
    ]


def _profile_lines(profile: ProfileReport) -> list[str]:
    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:,.0f}"

    sharing = "n/a" if profile.sharing_ratio is None else f"{profile.sharing_ratio:.1%}"
    lines = [
        "## Profile",
        "",
        "| | |",
        "|---|---|",
        f"| model | {profile.model} (max_model_len {profile.max_model_len}) |",
        f"| prompts | {profile.n_prompts} |",
        f"| prompt tokens | {profile.input_tokens:,} |",
        f"| length mean / p50 / p90 / p99 / max | {num(profile.mean_tokens)} / "
        f"{num(profile.p50_tokens)} / {num(profile.p90_tokens)} / {num(profile.p99_tokens)} / "
        f"{num(profile.max_tokens)} |",
        f"| over max_model_len (error rows) | {profile.n_over_length} |",
        f"| output will be cut | {profile.n_will_truncate} |",
        f"| prefix sharing (prefix tree) | {sharing} |",
        f"| prefix groups (>= {profile.min_shared_tokens} shared tokens) | "
        f"{profile.n_prefix_groups} |",
        "",
    ]
    for g in profile.top_groups[:5]:
        lines.append(
            f"- group {g.rank}: {g.n_prompts} prompts share {g.shared_prefix_tokens} tokens "
            f"(first `{g.first_request_id}`)"
        )
    if profile.top_groups:
        lines.append("")
    return lines + _class_lines(profile)


def _class_lines(profile: ProfileReport) -> list[str]:
    """The request classes the fluid LP works with (docs/control.md)."""
    if not profile.request_classes:
        return []
    rows = [
        f"| {c.name} | {c.n_requests:,} | {c.prompt_tokens:,.0f} | {c.output_tokens:,.0f} |"
        for c in profile.request_classes
    ]
    return [
        "### Request classes",
        "",
        "| class | prompts | mean prompt tokens | mean estimated output tokens |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


def histogram_bin_tokens(profile: ProfileReport, n_bins: int = 16) -> int:
    """A round bin width (tokens) giving about n_bins bins up to the longest prompt."""
    longest = profile.max_tokens or 1
    raw = max(1, -(-longest // n_bins))
    step = 10 ** (len(str(raw)) - 1)
    return -(-raw // step) * step


def _histogram_lines(histogram: list[LengthBin], width: int = 40) -> list[str]:
    """A text bar chart: it renders in the Prefect UI without any image hosting."""
    most = max(b.n_prompts for b in histogram)
    lines = ["## Prompt lengths (tokens)", "", "```"]
    for b in histogram:
        bar = "█" * max(1, round(width * b.n_prompts / most))
        lines.append(f"{b.lo_tokens:>7} - {b.hi_tokens:<7} {bar} {b.n_prompts}")
    return [*lines, "```", ""]


def publish_run_table(run: RunReport) -> None:
    create_table_artifact(
        run_table(run),
        key=artifact_key("run", run.dataset),
        description=f"execute {run.dataset}: {run.run_id} {run.status}",
    )


def publish_summary(
    store: Store, plan: PlanReport, profile: ProfileReport | None, run: RunReport | None
) -> None:
    histogram = None
    if profile is not None and profile.n_prompts:
        histogram = length_histogram(store, profile.key, histogram_bin_tokens(profile))
    create_markdown_artifact(
        summary_markdown(plan, profile, run, histogram),
        key=artifact_key("summary", plan.dataset),
        description=f"plan and profile of {plan.dataset} snapshot {plan.snapshot}",
    )
