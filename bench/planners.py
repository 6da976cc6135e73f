"""Benchmark the planners side by side in the engine simulator, on equal footing.

    python bench/planners.py [--n 20000] [--family-n 10000] [--instances 2] [--workers 2]
                             [--step-model vllm|overlap] [--markdown docs/planners.md]
                             [--json bench/results/planners-vllm.json]
    python bench/planners.py --from-json bench/results/planners-vllm.json --markdown FILE
    python bench/planners.py --quick          # 10k requests, one instance per family
    python bench/planners.py --scale-1m       # planning time and peak memory at 1M requests

Workloads: the paper's four main mixes (BurstGPT + MMLU + OpenVid at fixed rho and sharing,
`--n` requests) and `--instances` draws of every family of blend/workload_families.py
(`--family-n` requests; each draw has its own shape). Every planner runs the pipeline as it
runs for real (blend/simulate/pipeline.py: a warm-up sample first, then the rest re-planned
from the lengths it measured; planners never see true lengths), for llama-3.1-8b on
a100-80g, under three engine settings:
  default    vLLM's offline defaults for the hardware (what a user gets without a search)
  best       each planner's own best candidate in hindsight (every candidate simulated with
             the true lengths; the same candidates for every planner)
  pipeline   the candidate the pipeline's search picks after the warm-up, from estimated
             lengths only (what `blend run` does; the engine restart it may cost is not
             counted)
plus, for BlendServe, an oracle row (all true lengths known when planning) and two ablations
(its order fed in order instead of by the online dual scan; the dual scan without pacing),
all at its best row's settings. --step-model overlap replaces vLLM's step model by one where
compute and memory traffic overlap within a step (the engine the BlendServe paper runs on).
Per run: throughput, the fraction of T_opt at effective and at peak rates, the prefix sharing
of the order the engine really saw over DFS's, preemptions, settings and the gap breakdown.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from blend.admission.dual_scan import DualScanOptions
from blend.cost import CostModel
from blend.engine_settings import (
    EngineSettings,
    candidate_settings,
    memory_centric_seqs,
    vllm_default_settings,
)
from blend.planners import PlanRequest, make_planner
from blend.planners.blendserve import BlendServePlanner
from blend.simulate.gap import gap_breakdown
from blend.simulate.io import Workload
from blend.simulate.optimal import dfs_sharing_ratio, optimal_makespan_s
from blend.simulate.pipeline import PipelineRun, PipelineSimulator, SimulatedEngine
from blend.simulate.run import search_after_warmup
from blend.simulate.types import SimRequest
from blend.tree import order_sharing_ratio
from blend.workload_families import FAMILIES, draw_instance, paper_mix_workload
from blend.workloads import MAIN_MIXES, default_cost, few_shot_prompts

PLANNERS = ("fcfs", "random", "dfs", "naive-blend", "batchllm", "blendserve")
MAX_MODEL_LEN = 65536  # the context candidate settings are validated against (tokens)
MAIN_MIX = "main-mix (paper)"


@dataclass(frozen=True, slots=True)
class Job:
    """One planner on one workload."""

    workload: str  # a main mix name, or "<family>#<seed>"
    family: str
    planner: str
    n: int
    step_model: str = "vllm"  # see bench_cost


@dataclass(frozen=True, slots=True)
class Row:
    workload: str
    family: str
    planner: str  # a planner name, or blendserve-oracle / -in-order / -no-pace (ablations)
    mode: str  # default | best | pipeline
    max_num_batched_tokens: int
    max_num_seqs: int
    throughput_tok_s: float
    makespan_s: float
    fraction_of_optimal: float  # T_opt (effective rates) / makespan
    fraction_of_peak_optimal: float  # T_opt (peak rates) / makespan
    merged_sharing: float  # prefix sharing of the order the engine saw / DFS sharing
    n_preemptions: int
    gap: dict  # the gap breakdown (blend/simulate/gap.py)
    simulate_s: float  # wall time of this row's simulations (s)


def load_workload(job: Job) -> Workload:
    if job.family == MAIN_MIX:
        return paper_mix_workload(job.workload, job.n)
    family, seed = job.workload.split("#")
    return draw_instance(family, job.n, int(seed)).workload


def jobs(
    n: int, family_n: int, instances: int, planners: Sequence[str], step_model: str
) -> Iterator[Job]:
    for name in MAIN_MIXES:
        for planner in planners:
            yield Job(name, MAIN_MIX, planner, n, step_model)
    for family in FAMILIES:
        if family == "main-mix":
            continue  # the paper's four mixes stand for it
        for seed in range(instances):
            for planner in planners:
                yield Job(f"{family}#{seed}", family, planner, family_n, step_model)


class _Recorder:
    """Turns pipeline runs of one workload into Rows."""

    def __init__(self, job: Job, requests: Sequence[SimRequest], cost: CostModel) -> None:
        self.job, self.requests, self.cost = job, requests, cost
        self.prompts = [r.prompt_token_ids for r in requests]
        self.sharing = dfs_sharing_ratio(requests)
        self.t_opt = optimal_makespan_s(requests, cost, self.sharing)
        self.t_opt_peak = optimal_makespan_s(requests, cost, self.sharing, peak=True)
        self.rows: list[Row] = []

    def add(self, label: str, mode: str, run: PipelineRun, seconds: float) -> None:
        result = run.result
        merged = order_sharing_ratio(self.prompts, result.admission_order.tolist())
        gap = gap_breakdown(result, self.requests, self.cost, self.sharing, self.t_opt)
        self.rows.append(
            Row(
                workload=self.job.workload,
                family=self.job.family,
                planner=label,
                mode=mode,
                max_num_batched_tokens=run.settings.max_num_batched_tokens,
                max_num_seqs=run.settings.max_num_seqs,
                throughput_tok_s=result.throughput_tok_s,
                makespan_s=result.makespan_s,
                fraction_of_optimal=self.t_opt / result.makespan_s,
                fraction_of_peak_optimal=self.t_opt_peak / result.makespan_s,
                merged_sharing=merged / self.sharing if self.sharing > 0 else 1.0,
                n_preemptions=result.n_preemptions,
                gap=gap.to_json(),
                simulate_s=seconds,
            )
        )


STEP_MODELS = ("vllm", "overlap")  # the hardware profile's step model, or everything overlapping


def bench_cost(step_model: str) -> CostModel:
    """llama-3.1-8b on a100-80g; "overlap" replaces vLLM's step model (attention after the
    GEMMs, soft roofline knee) by one where compute and memory traffic overlap within a step,
    as in engines that split batches to overlap kernels (NanoFlow, which BlendServe builds on)."""
    cost = default_cost()
    if step_model == "overlap":
        hw = replace(cost.hardware, attention_after_gemm=False, roofline_sharpness=0.0)
        return CostModel(cost.model, hw)
    return cost


def run_job(job: Job) -> list[Row]:
    """Every settings mode of one planner on one workload (in a worker process)."""
    workload = load_workload(job)
    cost = bench_cost(job.step_model)
    recorder = _Recorder(job, workload.requests, cost)
    default = vllm_default_settings(cost.hardware, MAX_MODEL_LEN)
    planner = make_planner(job.planner, cost=cost)
    simulator = PipelineSimulator(workload, planner, cost, engine=SimulatedEngine(default))

    started = time.perf_counter()
    first = simulator.run(default)
    recorder.add(job.planner, "default", first, time.perf_counter() - started)
    started = time.perf_counter()
    candidates = candidates_for(default, first, workload.requests, cost)
    runs = [simulator.run(c) for c in candidates]
    best = min(runs, key=lambda r: r.result.makespan_s)
    recorder.add(job.planner, "best", best, time.perf_counter() - started)
    started = time.perf_counter()
    chosen = search_after_warmup(simulator, first, cost).best
    pipeline = next((r for r in runs if r.settings == chosen), None) or simulator.run(chosen)
    recorder.add(job.planner, "pipeline", pipeline, time.perf_counter() - started)
    if job.planner == "blendserve":
        started = time.perf_counter()
        oracle = PipelineSimulator(workload, planner, cost, oracle=True).run(best.settings)
        recorder.add("blendserve-oracle", "best", oracle, time.perf_counter() - started)
        started = time.perf_counter()
        static = BlendServePlanner(cost, online=False)
        in_order = PipelineSimulator(workload, static, cost).run(best.settings)
        recorder.add("blendserve-in-order", "best", in_order, time.perf_counter() - started)
        started = time.perf_counter()
        unpaced = PipelineSimulator(
            workload, planner, cost, dual_scan=DualScanOptions(pace=False)
        ).run(best.settings)
        recorder.add("blendserve-no-pace", "best", unpaced, time.perf_counter() - started)
    return recorder.rows


def candidates_for(
    default: EngineSettings, run: PipelineRun, requests: Sequence[SimRequest], cost: CostModel
) -> list[EngineSettings]:
    """The candidates every planner's best is taken among: the pipeline's search list."""
    prompts = np.mean([len(r.prompt_token_ids) for r in requests])
    footprint = float(prompts + run.planned.estimates.tokens.mean() / 2.0)
    centric = memory_centric_seqs(cost.kv_capacity_tokens, footprint)
    return candidate_settings(default, MAX_MODEL_LEN, centric)


# -- reporting ---------------------------------------------------------------------------------


def ratio_table(rows: Sequence[Row]) -> str:
    """Per workload and planner: throughput over DFS's in each settings mode."""
    by = {(r.workload, r.planner, r.mode): r for r in rows}
    workloads = list(dict.fromkeys(r.workload for r in rows))
    labels = list(dict.fromkeys(r.planner for r in rows))
    lines = [
        "| workload | planner | vs DFS: default | best | pipeline | best settings (tokens x seqs)"
        " | of T_opt (eff. / peak) | sharing kept | preemptions |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for w in workloads:
        for label in labels:
            cells = []
            for mode in ("default", "best", "pipeline"):
                row, dfs = by.get((w, label, mode)), by.get((w, "dfs", mode))
                cells.append(
                    f"{row.throughput_tok_s / dfs.throughput_tok_s:.2f}x" if row and dfs else ""
                )
            best = by.get((w, label, "best"))
            if best is None:
                continue
            lines.append(
                f"| {w} | {label} | {' | '.join(cells)} | "
                f"{best.max_num_batched_tokens} x {best.max_num_seqs} | "
                f"{best.fraction_of_optimal:.0%} / {best.fraction_of_peak_optimal:.0%} | "
                f"{best.merged_sharing:.1%} | {best.n_preemptions} |"
            )
    return "\n".join(lines)


def family_summary(rows: Sequence[Row]) -> str:
    """Per family, at each planner's best settings: BlendServe against each peer (mean and
    worst instance), the warm-up plan against the oracle, and the sharing kept."""
    by = {(r.workload, r.planner, r.mode): r for r in rows}
    per_family: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r.planner == "blendserve" and r.mode == "best":
            per_family[r.family].append(r.workload)
    lines = [
        "| family | instances | BlendServe vs DFS (mean, worst) | vs naive-blend | vs BatchLLM "
        "| vs DFS, all at the default engine | vs DFS as the pipeline chooses "
        "| warm-up plan / oracle plan | pacing on / off | sharing kept (worst) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def ratios(workloads: list[str], peer: str, mode: str = "best") -> list[float]:
        return [
            by[(w, "blendserve", mode)].throughput_tok_s / by[(w, peer, mode)].throughput_tok_s
            for w in workloads
            if (w, peer, mode) in by
        ]

    def cell(values: list[float]) -> str:
        return f"{np.mean(values):.2f}x ({min(values):.2f}x)" if values else "-"

    for family, workloads in per_family.items():
        oracle = [
            by[(w, "blendserve", "best")].throughput_tok_s
            / by[(w, "blendserve-oracle", "best")].throughput_tok_s
            for w in workloads
        ]
        sharing = min(by[(w, "blendserve", "best")].merged_sharing for w in workloads)
        lines.append(
            f"| {family} | {len(workloads)} | {cell(ratios(workloads, 'dfs'))} | "
            f"{cell(ratios(workloads, 'naive-blend'))} | {cell(ratios(workloads, 'batchllm'))} | "
            f"{cell(ratios(workloads, 'dfs', 'default'))} | "
            f"{cell(ratios(workloads, 'dfs', 'pipeline'))} | "
            f"{cell(oracle)} | {cell(ratios(workloads, 'blendserve-no-pace'))} | "
            f"{sharing:.1%} |"
        )
    return "\n".join(lines)


GAP_PLANNERS = ("dfs", "batchllm", "blendserve", "blendserve-oracle")


def gap_table(rows: Sequence[Row]) -> str:
    """The main mixes' makespans split into T_opt and the causes of the gap (each planner at
    its best settings; blend/simulate/gap.py)."""
    lines = [
        "| mix | planner | T_opt s | + bound's decode sharing | + extra work | + weight reads "
        "| + other side | + overhead | = makespan s | drain s | KV discarded (tokens) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.family != MAIN_MIX or r.mode != "best" or r.planner not in GAP_PLANNERS:
            continue
        g = r.gap
        terms = [
            "optimal_s",
            "bound_decode_sharing_s",
            "extra_work_s",
            "weight_reads_s",
            "other_side_s",
            "overhead_s",
        ]
        cells = " | ".join(f"{g[t]:,.0f} ({g[t] / g['makespan_s']:.0%})" for t in terms)
        lines.append(
            f"| {r.workload} | {r.planner} | {cells} | {g['makespan_s']:,.0f} | "
            f"{g['drain_s']:,.0f} | {g['kv_discarded_tokens']:,} |"
        )
    return "\n".join(lines)


def write_tables(path: Path, rows: Sequence[Row], model: str) -> None:
    """Fill the step model's tables of `path` (markers name the table and the model)."""
    for name, table in (
        ("rows", ratio_table(rows)),
        ("families", family_summary(rows)),
        ("gap", gap_table(rows)),
    ):
        write_markdown(
            path, table, f"<!-- planners: {name} {model} -->", f"<!-- end {name} {model} -->"
        )


def write_markdown(path: Path, table: str, begin: str, end: str) -> None:
    """Put the table between the markers of `path` (or append the markers and the table)."""
    block = f"{begin}\n{table}\n{end}"
    text = path.read_text() if path.exists() else "# Planner benchmark\n"
    if begin not in text or end not in text:
        text = text.rstrip() + f"\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(head + block + tail)


def plan_1m(n: int = 1_000_000, mean_tokens: int = 500, seed: int = 0) -> None:
    """Plan n requests of ~mean_tokens tokens (25% under 200 shared few-shot prefixes)."""
    prompts, rng = few_shot_prompts(n, mean_tokens, seed)
    outputs = rng.integers(1, 2000, n)
    requests = [
        PlanRequest(f"r{i}", prompt, 4096, int(outputs[i]) if i % 100 == 0 else None)
        for i, prompt in enumerate(prompts)
    ]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    started, cpu_started = time.perf_counter(), time.process_time()
    plan = make_planner("blendserve").plan(requests)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"blendserve planned {n:,} requests ({sum(len(p) for p in prompts):,} tokens) in "
        f"{seconds:.1f} s ({cpu_seconds:.1f} s CPU); peak RSS {rss:.2f} GiB (inputs alone "
        f"{rss_before:.2f} GiB); n_split {plan.params['n_split']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="requests per main mix")
    parser.add_argument("--family-n", type=int, default=10_000, help="requests per family draw")
    parser.add_argument("--instances", type=int, default=2, help="draws per family")
    parser.add_argument("--planners", default=",".join(PLANNERS))
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--step-model", choices=STEP_MODELS, default="vllm")
    parser.add_argument("--quick", action="store_true", help="10k requests, one draw per family")
    parser.add_argument("--json", type=Path, default=None, help="write every row here")
    parser.add_argument("--markdown", type=Path, default=None, help="fill this file's tables")
    parser.add_argument("--scale-1m", action="store_true", help="time planning 1M requests")
    parser.add_argument(
        "--from-json", type=Path, default=None, help="render --markdown from these rows"
    )
    args = parser.parse_args()
    if args.from_json:
        rows = [Row(**r) for r in json.loads(args.from_json.read_text())]
        if args.markdown:
            write_tables(args.markdown, rows, args.step_model)
        print(ratio_table(rows), family_summary(rows), gap_table(rows), sep="\n\n")
        return
    if args.scale_1m:
        plan_1m()
        return
    if args.quick:
        args.n, args.family_n, args.instances = 10_000, 10_000, 1
    planners = args.planners.split(",")
    todo = list(jobs(args.n, args.family_n, args.instances, planners, args.step_model))
    started = time.perf_counter()
    rows: list[Row] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for done in pool.map(run_job, todo):
            rows += done
            r = done[0]
            print(
                f"{r.workload} {r.planner}: {r.throughput_tok_s:,.0f} tok/s (default)", flush=True
            )
    print(f"\n{len(todo)} jobs in {time.perf_counter() - started:.0f} s\n")
    table, summary = ratio_table(rows), family_summary(rows)
    print(table, "\n\n", summary, sep="")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    if args.markdown:
        write_tables(args.markdown, rows, args.step_model)


if __name__ == "__main__":
    main()
