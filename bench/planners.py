"""Benchmark the planners side by side in the engine simulator, on equal footing.

    python bench/planners.py [--n 20000] [--family-n 10000] [--instances 2] [--workers 2]
                             [--step-model vllm|overlap] [--markdown docs/planners.md]
                             [--json bench/results/planners-vllm.json]
    python bench/planners.py --from-json bench/results/planners-vllm.json --markdown FILE
    python bench/planners.py --quick          # 10k requests, one instance per family
    python bench/planners.py --scale-1m       # planning time and peak memory at 1M requests
    python bench/planners.py --families dolly --planners dfs,lpt,naive-blend,batchllm,blendserve \
        --guards depth-first depth-first+longest-first --pipeline-only   # the guard ablation

Workloads: the paper's four main mixes (BurstGPT + MMLU + OpenVid at fixed rho and sharing,
`--n` requests) and `--instances` draws of every family of bench/workloads/families.py
(`--family-n` requests; each draw has its own shape, none tuned on). Planners: dfs, lpt,
naive-blend, batchllm (the peers) and blendserve. Every planner runs the pipeline as it runs
for real (blend/simulate/pipeline.py: a warm-up sample first, then the rest re-planned from
the lengths it measured; planners never see true lengths), for llama-3.1-8b on a100-80g,
in three modes:
  default    vLLM's offline defaults for the hardware and the plan's own feed (what a user
             gets without the search)
  pipeline   what the pipeline's search picks after the warm-up from estimated lengths only
             (blend/simulate/settings_search.py: feed and settings; `blend run` does the
             same; the engine restart it may cost is not counted), with its prediction
  best       the fastest of the same candidates in hindsight, each run on the true lengths
plus, for BlendServe, an oracle row (true lengths known when planning, at its best feed and
settings) and the paper's static merge fed in order. --step-model overlap replaces vLLM's step
model by one where compute and memory traffic overlap within a step (the BlendServe paper's
engine). Per run: the fraction of T_seq (the sequential engine's bound) and of T_opt,
throughput over DFS's and over the best peer, steps over T_seq's fewest, KV occupancy, mean
batch size, preemptions, the feed and settings chosen, and the makespan split against T_seq.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.workloads

from bench.workloads.families import FAMILIES, draw_instance, paper_mix_workload
from bench.workloads.generators import MAIN_MIXES, default_cost, few_shot_prompts
from blend.cost.model import CostModel
from blend.engines.settings import memory_centric_seqs, vllm_default_settings
from blend.planners import Plan, PlanRequest, estimate_outputs, make_planner
from blend.planners.blendserve import BlendServePlanner
from blend.planners.tree import order_sharing_ratio
from blend.simulate import settings_search
from blend.simulate.gap import sequential_gap
from blend.simulate.io import Workload
from blend.simulate.optimal import optimal_makespan_s
from blend.simulate.pipeline import PipelineRun, PipelineSimulator, SimulatedEngine
from blend.simulate.run import search_after_warmup
from blend.simulate.sequential_bound import prompt_trie_totals, sequential_bound
from blend.simulate.settings_search import Guard, SearchInputs, search_plan
from blend.simulate.types import SimConfig, SimRequest

PLANNERS = ("dfs", "lpt", "naive-blend", "batchllm", "blendserve")
PEERS = ("dfs", "lpt", "naive-blend", "batchllm")  # what BlendServe is held against
MAX_MODEL_LEN = 65536  # the context candidate settings are validated against (tokens)
MAIN_MIX = "main-mix (paper)"
_DEFAULT_GUARDS = settings_search.GUARDS  # blend's own, before any ablation


@dataclass(frozen=True, slots=True)
class Job:
    """One planner on one workload."""

    workload: str  # a main mix name, or "<family>#<seed>"
    family: str
    planner: str
    n: int
    step_model: str = "vllm"  # see bench_cost
    # ablation (blendserve only): the guards its search tries (settings_search.GUARDS), the
    # rows labelled blendserve[...]; None: blend's own
    guards: tuple[str, ...] | None = None
    pipeline_only: bool = False  # only the default and pipeline modes (no hindsight best)


@dataclass(frozen=True, slots=True)
class Row:
    workload: str
    family: str
    planner: str  # a planner name, or blendserve-oracle / -in-order (ablations)
    mode: str  # default | best | pipeline
    max_num_batched_tokens: int
    max_num_seqs: int
    feed: str  # how the re-planned requests were fed (dual-scan, unpaced, fallback, in-order)
    throughput_tok_s: float
    makespan_s: float
    fraction_of_t_seq: float  # T_seq / makespan: the sequential engine's (vLLM's) bound
    fraction_of_optimal: float  # T_opt (effective rates) / makespan: an overlapping engine's
    steps_over_n_min: float  # engine steps / the fewest T_seq counts
    mean_kv_occupancy: float  # KV blocks in use / cache, mean over steps
    mean_batch_size: float  # requests scheduled per step, mean over steps
    merged_sharing: float  # prefix sharing of the order the engine saw / DFS sharing
    n_preemptions: int
    n_requests: int
    predicted_makespan_s: float | None  # what the pipeline's search predicted (pipeline mode)
    t_seq_gap: dict  # the makespan as T_seq plus its causes (blend/simulate/gap.py)
    simulate_s: float  # wall time of this row's simulations (s)


def load_workload(job: Job) -> Workload:
    if job.family == MAIN_MIX:
        return paper_mix_workload(job.workload, job.n)
    family, seed = job.workload.split("#")
    return draw_instance(family, job.n, int(seed)).workload


def jobs(
    n: int,
    family_n: int,
    instances: int,
    planners: Sequence[str],
    step_model: str,
    guard_variants: Sequence[tuple[str, ...]] = (),
    pipeline_only: bool = False,
) -> Iterator[Job]:
    """Every planner on every workload; blendserve once per guard variant if any given."""

    def each(workload: str, family: str, size: int) -> Iterator[Job]:
        for planner in planners:
            if planner == "blendserve" and guard_variants:
                for guards in guard_variants:
                    yield Job(workload, family, planner, size, step_model, guards, pipeline_only)
            else:
                yield Job(workload, family, planner, size, step_model, None, pipeline_only)

    for name in MAIN_MIXES:
        yield from each(name, MAIN_MIX, n)
    for family in FAMILIES:
        if family == "main-mix":
            continue  # the paper's four mixes stand for it
        for seed in range(instances):
            yield from each(f"{family}#{seed}", family, family_n)


class _Recorder:
    """Turns pipeline runs of one workload into Rows."""

    def __init__(self, job: Job, requests: Sequence[SimRequest], cost: CostModel) -> None:
        self.job, self.requests, self.cost = job, requests, cost
        self.prompts = [r.prompt_token_ids for r in requests]
        trie = prompt_trie_totals(self.prompts)
        self.sharing = trie.sharing_ratio
        self.t_opt = optimal_makespan_s(requests, cost, self.sharing)
        self.t_seq = sequential_bound(requests, cost, trie=trie)
        self.rows: list[Row] = []

    def add(
        self,
        label: str,
        mode: str,
        run: PipelineRun,
        seconds: float,
        predicted_s: float | None = None,
    ) -> None:
        result = run.result
        merged = order_sharing_ratio(self.prompts, result.admission_order.tolist())
        gap = sequential_gap(result, self.t_seq, self.cost)
        self.rows.append(
            Row(
                workload=self.job.workload,
                family=self.job.family,
                planner=label,
                mode=mode,
                max_num_batched_tokens=run.settings.max_num_batched_tokens,
                max_num_seqs=run.settings.max_num_seqs,
                feed=run.feed.label(),
                throughput_tok_s=result.throughput_tok_s,
                makespan_s=result.makespan_s,
                fraction_of_t_seq=self.t_seq.makespan_s / result.makespan_s,
                fraction_of_optimal=self.t_opt / result.makespan_s,
                steps_over_n_min=result.n_steps / self.t_seq.n_min_steps,
                mean_kv_occupancy=result.mean_kv_occupancy,
                mean_batch_size=result.mean_batch_size,
                merged_sharing=merged / self.sharing if self.sharing > 0 else 1.0,
                n_preemptions=result.n_preemptions,
                n_requests=len(self.requests),
                predicted_makespan_s=predicted_s,
                t_seq_gap=gap.to_json(),
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
    """Every settings mode of one planner on one workload (in a worker process).

    default: vLLM's defaults and the plan's own feed; pipeline: what the pipeline's search
    picks after the warm-up (estimates only) and its prediction; best: the fastest of the
    same candidates (every feed and setting the search tries), each run on the true lengths.
    """
    workload = load_workload(job)
    cost = bench_cost(job.step_model)
    recorder = _Recorder(job, workload.requests, cost)
    guards = _DEFAULT_GUARDS if job.guards is None else tuple(map(Guard, job.guards))
    settings_search.GUARDS = guards  # a worker runs many jobs: set for each
    label = job.planner if job.guards is None else f"{job.planner}[{'+'.join(job.guards)}]"
    default = vllm_default_settings(cost.hardware, MAX_MODEL_LEN)
    planner = make_planner(job.planner, cost=cost)
    # the jobs already run side by side (--workers): one process per search
    simulator = PipelineSimulator(
        workload, planner, cost, engine=SimulatedEngine(default), search_workers=1
    )

    started = time.perf_counter()
    first = simulator.run(default)
    recorder.add(label, "default", first, time.perf_counter() - started)
    started = time.perf_counter()
    search = search_after_warmup(simulator, first, cost)
    search_s = time.perf_counter() - started
    if job.pipeline_only:
        pick = (search.best.settings, search.best.feed)
        same = pick == (first.settings, first.feed)
        chosen = first if same else simulator.run(*pick)
        recorder.add(label, "pipeline", chosen, search_s, search.best.makespan_s)
        return recorder.rows
    started = time.perf_counter()
    runs = {
        (t.settings, t.feed): simulator.run(t.settings, t.feed)
        for t in search.trials
        if (t.settings, t.feed) != (first.settings, first.feed)
    }
    runs[(first.settings, first.feed)] = first
    best = min(runs.values(), key=lambda r: r.result.makespan_s)
    recorder.add(label, "best", best, time.perf_counter() - started)
    chosen = runs[(search.best.settings, search.best.feed)]
    recorder.add(label, "pipeline", chosen, search_s, search.best.makespan_s)
    if job.planner == "blendserve" and job.guards is None:
        started = time.perf_counter()
        oracle = PipelineSimulator(workload, planner, cost, oracle=True)
        at_best = oracle.run(best.settings, best.feed)
        recorder.add("blendserve-oracle", "best", at_best, time.perf_counter() - started)
        started = time.perf_counter()
        static = BlendServePlanner(cost, online=False)
        in_order = PipelineSimulator(workload, static, cost).run(best.settings)
        recorder.add("blendserve-in-order", "best", in_order, time.perf_counter() - started)
    return recorder.rows


# -- reporting ---------------------------------------------------------------------------------


def _index(rows: Sequence[Row]) -> dict[tuple[str, str, str], Row]:
    return {(r.workload, r.planner, r.mode): r for r in rows}


def _best_peer(by: dict, workload: str, mode: str) -> Row | None:
    peers = [by[(workload, p, mode)] for p in PEERS if (workload, p, mode) in by]
    return max(peers, key=lambda r: r.throughput_tok_s) if peers else None


def ratio_table(rows: Sequence[Row]) -> str:
    """Per workload and planner: the fraction of T_seq in each mode, throughput over DFS's and
    over the best peer as the pipeline runs it, and what the pipeline chose."""
    by = _index(rows)
    workloads = list(dict.fromkeys(r.workload for r in rows))
    labels = list(dict.fromkeys(r.planner for r in rows))
    lines = [
        "| workload | planner | of T_seq: default | best | pipeline | pipeline vs DFS "
        "| vs best peer | pipeline: tokens x seqs, feed | predicted / simulated | steps / N_min "
        "| KV occupancy | mean batch | preempted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in workloads:
        for label in labels:
            cells = [
                f"{by[(w, label, m)].fraction_of_t_seq:.1%}" if (w, label, m) in by else ""
                for m in ("default", "best", "pipeline")
            ]
            row = by.get((w, label, "pipeline")) or by.get((w, label, "best"))
            if row is None:
                continue
            dfs, peer = by.get((w, "dfs", row.mode)), _best_peer(by, w, row.mode)
            vs_dfs = f"{row.throughput_tok_s / dfs.throughput_tok_s:.3f}x" if dfs else ""
            vs_peer = f"{row.throughput_tok_s / peer.throughput_tok_s:.3f}x" if peer else ""
            predicted = (
                f"{row.predicted_makespan_s / row.makespan_s:.2f}"
                if row.predicted_makespan_s
                else ""
            )
            lines.append(
                f"| {w} | {label} | {' | '.join(cells)} | {vs_dfs} | {vs_peer} | "
                f"{row.max_num_batched_tokens} x {row.max_num_seqs}, {row.feed} | {predicted} | "
                f"{row.steps_over_n_min:.2f} | {row.mean_kv_occupancy:.0%} | "
                f"{row.mean_batch_size:.0f} | {row.n_preemptions / row.n_requests:.1%} |"
            )
    return "\n".join(lines)


def family_summary(rows: Sequence[Row]) -> str:
    """Per family: BlendServe as the pipeline runs it against T_seq and against its peers
    (each at what the pipeline chose for it), at every planner's best, at vLLM's defaults;
    with true lengths; KV occupancy and batch size against DFS's; the search's prediction."""
    by = _index(rows)
    per_family: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r.planner == "blendserve" and r.mode == "pipeline":
            per_family[r.family].append(r.workload)
    lines = [
        "| family | draws | BlendServe of T_seq (mean, worst) | with true lengths "
        "| vs best peer (mean, worst) | vs best peer, each at its best | vs DFS at the defaults "
        "| KV occupancy: BlendServe / DFS | mean batch: BlendServe / DFS | most preempted "
        "| predicted / simulated (range) | feeds picked |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(values: list[float], fmt: str = "{:.2f}x") -> str:
        if not values:
            return "-"
        return f"{fmt.format(np.mean(values))} ({fmt.format(min(values))})"

    for family, workloads in per_family.items():
        own = [by[(w, "blendserve", "pipeline")] for w in workloads]
        oracle = [
            by[(w, "blendserve-oracle", "best")].fraction_of_t_seq
            for w in workloads
            if (w, "blendserve-oracle", "best") in by
        ]

        def versus(mode: str, ws: list[str] = workloads) -> list[float]:
            out = []
            for w in ws:
                peer = _best_peer(by, w, mode)
                if peer is not None and (w, "blendserve", mode) in by:
                    out.append(by[(w, "blendserve", mode)].throughput_tok_s / peer.throughput_tok_s)
            return out

        dfs_default = [
            by[(w, "blendserve", "default")].throughput_tok_s
            / by[(w, "dfs", "default")].throughput_tok_s
            for w in workloads
            if (w, "dfs", "default") in by
        ]
        dfs = [by[(w, "dfs", "pipeline")] for w in workloads if (w, "dfs", "pipeline") in by]
        occupancy = (
            f"{np.mean([r.mean_kv_occupancy for r in own]):.0%} / "
            f"{np.mean([r.mean_kv_occupancy for r in dfs]):.0%}"
            if dfs
            else "-"
        )
        batch = (
            f"{np.mean([r.mean_batch_size for r in own]):.0f} / "
            f"{np.mean([r.mean_batch_size for r in dfs]):.0f}"
            if dfs
            else "-"
        )
        predicted = [r.predicted_makespan_s / r.makespan_s for r in own if r.predicted_makespan_s]
        feeds = ", ".join(sorted({r.feed for r in own}))
        lines.append(
            f"| {family} | {len(workloads)} | "
            f"{cell([r.fraction_of_t_seq for r in own], '{:.1%}')} | "
            f"{cell(oracle, '{:.1%}')} | {cell(versus('pipeline'), '{:.3f}x')} | "
            f"{cell(versus('best'), '{:.3f}x')} | {cell(dfs_default)} | {occupancy} | {batch} | "
            f"{max(r.n_preemptions / r.n_requests for r in own):.1%} | "
            + (f"{min(predicted):.2f}-{max(predicted):.2f}" if predicted else "-")
            + f" | {feeds} |"
        )
    return "\n".join(lines)


GAP_PLANNERS = ("dfs", "lpt", "blendserve", "blendserve-oracle")
GAP_TERMS = (
    "t_seq_s",
    "extra_steps_overhead_s",
    "extra_steps_weights_s",
    "extra_work_s",
    "uneven_steps_s",
)


def gap_table(rows: Sequence[Row]) -> str:
    """The main mixes' makespans split into T_seq and the causes of the gap (each planner as
    the pipeline runs it; the oracle at BlendServe's best; blend/simulate/gap.py)."""
    lines = [
        "| mix | planner | T_seq s | + extra steps: overhead | + extra steps: weight reads "
        "| + extra work | + uneven steps | = makespan s | steps / N_min | drain s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.family != MAIN_MIX or r.planner not in GAP_PLANNERS:
            continue
        if r.mode != ("best" if r.planner == "blendserve-oracle" else "pipeline"):
            continue
        g = r.t_seq_gap
        cells = " | ".join(f"{g[t]:,.0f} ({g[t] / g['makespan_s']:.0%})" for t in GAP_TERMS)
        lines.append(
            f"| {r.workload} | {r.planner} | {cells} | {g['makespan_s']:,.0f} | "
            f"{r.steps_over_n_min:.2f} | {g['drain_s']:,.0f} |"
        )
    return "\n".join(lines)


def guard_table(rows: Sequence[Row]) -> str:
    """The --guards ablation: per workload, each BlendServe variant as the pipeline runs it
    against the best peer, what it picked, and its search's seconds; then mean and worst."""
    by = _index(rows)
    variants = list(dict.fromkeys(r.planner for r in rows if r.planner.startswith("blendserve[")))
    workloads = list(dict.fromkeys(r.workload for r in rows if r.planner in variants))
    lines = [
        "| workload | variant | vs best peer | makespan s | pipeline: tokens x seqs, feed "
        "| search s |",
        "|---|---|---|---|---|---|",
    ]
    summary: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for w in workloads:
        peer = _best_peer(by, w, "pipeline")
        for v in variants:
            row = by.get((w, v, "pipeline"))
            if row is None or peer is None:
                continue
            ratio = row.throughput_tok_s / peer.throughput_tok_s
            summary[v].append((ratio, row.simulate_s))
            lines.append(
                f"| {w} | {v} | {ratio:.3f}x ({peer.planner}) | {row.makespan_s:,.1f} | "
                f"{row.max_num_batched_tokens} x {row.max_num_seqs}, {row.feed} | "
                f"{row.simulate_s:.1f} |"
            )
    lines += ["", "| variant | vs best peer: mean | worst | search s, total |", "|---|---|---|---|"]
    for v, values in summary.items():
        ratios = [r for r, _ in values]
        lines.append(
            f"| {v} | {np.mean(ratios):.3f}x | {min(ratios):.3f}x | "
            f"{sum(t for _, t in values):.0f} |"
        )
    return "\n".join(lines)


def target_table(rows: Sequence[Row]) -> str:
    """The issue's targets, measured (BlendServe as the pipeline runs it unless named)."""
    by = _index(rows)
    own = [r for r in rows if r.planner == "blendserve" and r.mode == "pipeline"]
    oracle = [r for r in rows if r.planner == "blendserve-oracle"]
    versus = []
    for r in own:
        peer = _best_peer(by, r.workload, "pipeline")
        if peer is not None:
            versus.append((r.throughput_tok_s / peer.throughput_tok_s, r.workload, peer.planner))
    fractions = [r.fraction_of_t_seq for r in own]
    worst_t = min(own, key=lambda r: r.fraction_of_t_seq)
    worst_v = min(versus) if versus else (float("nan"), "-", "-")
    preempted = max(own, key=lambda r: r.n_preemptions / r.n_requests)
    predicted = [(r.predicted_makespan_s / r.makespan_s, r.workload) for r in own]
    off = [(abs(p - 1.0), w, p) for p, w in predicted if p]
    worst_p = max(off) if off else (0.0, "-", float("nan"))

    def verdict(ok: bool) -> str:
        return "met" if ok else "missed"

    return "\n".join(
        [
            "| target | measured | |",
            "|---|---|---|",
            f"| >= 0.95 of T_seq on every draw (warm-up estimates, the pipeline's settings) | "
            f"worst {worst_t.fraction_of_t_seq:.1%} ({worst_t.workload}) | "
            f"{verdict(min(fractions) >= 0.95)} |",
            f"| mean >= 0.97 of T_seq | {np.mean(fractions):.1%} | "
            f"{verdict(np.mean(fractions) >= 0.97)} |",
            "| >= 0.97 of T_seq with true lengths, everywhere | "
            + (
                f"worst {min(r.fraction_of_t_seq for r in oracle):.1%} | "
                f"{verdict(min(r.fraction_of_t_seq for r in oracle) >= 0.97)} |"
                if oracle
                else "- | |"
            ),
            f"| >= 0.99x the best peer on every draw | worst {worst_v[0]:.3f}x ({worst_v[1]}, "
            f"vs {worst_v[2]}) | {verdict(worst_v[0] >= 0.99)} |",
            f"| > 1.00x the best peer on the mean | {np.mean([v[0] for v in versus]):.3f}x | "
            f"{verdict(np.mean([v[0] for v in versus]) > 1.0)} |",
            f"| preemptions <= 1% of requests | worst "
            f"{preempted.n_preemptions / preempted.n_requests:.1%} ({preempted.workload}) | "
            f"{verdict(all(r.n_preemptions <= 0.01 * r.n_requests for r in own))} |",
            f"| search predicts within 15% | worst {worst_p[2]:.2f} ({worst_p[1]}) | "
            f"{verdict(worst_p[0] <= 0.15)} |",
        ]
    )


def write_tables(path: Path, rows: Sequence[Row], model: str) -> None:
    """Fill the step model's tables of `path` (markers name the table and the model)."""
    for name, table in (
        ("targets", target_table(rows)),
        ("families", family_summary(rows)),
        ("rows", ratio_table(rows)),
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
    search_1m(requests, plan)


def search_1m(requests: Sequence[PlanRequest], plan: Plan) -> None:
    """The pipeline's search of the plan (every candidate, on its sample), timed."""
    cost = default_cost()
    started = time.perf_counter()
    estimates = estimate_outputs(requests)
    order = np.asarray(plan.order, dtype=np.int64)
    inputs = SearchInputs(
        prompts=[requests[i].prompt_token_ids for i in order.tolist()],
        estimates=estimates.tokens[order],
        spread=estimates.spread[order],
        max_tokens=np.full(len(order), 4096),
        admission=plan.admission,
        residuals=estimates.residuals,
        guessed=estimates.guessed[order],
    )
    default = vllm_default_settings(cost.hardware, MAX_MODEL_LEN)
    footprint = float(np.mean([len(p) for p in inputs.prompts]) + estimates.tokens.mean() / 2)
    search = search_plan(
        inputs,
        cost,
        default,
        SimConfig(),
        memory_centric=memory_centric_seqs(cost.kv_capacity_tokens, footprint),
        max_model_len=MAX_MODEL_LEN,
    )
    seconds = time.perf_counter() - started
    best = search.best
    print(
        f"searched {len(search.trials)} candidates for the {len(order):,}-request plan on a "
        f"sample of {search.n_simulated:,} in {seconds:.1f} s (estimates included): "
        f"{best.settings.label()}, {best.feed.label()}, predicted {best.makespan_s:,.0f} s"
    )


def _set_preemption_limit(limit: float | None = None) -> None:
    """In each worker: the search's preemption limit for an ablation (None: blend's own)."""
    if limit is not None:
        settings_search.PREEMPTION_LIMIT = limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="requests per main mix")
    parser.add_argument("--family-n", type=int, default=10_000, help="requests per family draw")
    parser.add_argument("--instances", type=int, default=2, help="draws per family")
    parser.add_argument("--planners", default=",".join(PLANNERS))
    parser.add_argument("--families", default=None, help="only these families (comma list)")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--step-model", choices=STEP_MODELS, default="vllm")
    parser.add_argument("--quick", action="store_true", help="10k requests, one draw per family")
    parser.add_argument("--json", type=Path, default=None, help="write every row here")
    parser.add_argument("--markdown", type=Path, default=None, help="fill this file's tables")
    parser.add_argument("--scale-1m", action="store_true", help="time planning 1M requests")
    parser.add_argument(
        "--from-json", type=Path, default=None, help="render --markdown from these rows"
    )
    parser.add_argument(
        "--guards",
        nargs="+",
        default=None,
        metavar="G[+G]",
        help="ablation: run blendserve once per value, its search trying these guards "
        "(depth-first, longest-first, depth-first+longest-first); rows blendserve[...]",
    )
    parser.add_argument(
        "--pipeline-only",
        action="store_true",
        help="only the default and the pipeline's pick (no hindsight best, no oracle)",
    )
    parser.add_argument(
        "--preemption-limit",
        type=float,
        default=None,
        help="ablation: the search's PREEMPTION_LIMIT (inf: the fastest candidate, preempting "
        "or not)",
    )
    args = parser.parse_args()
    if args.from_json:
        rows = [Row(**r) for r in json.loads(args.from_json.read_text())]
        if args.markdown:
            write_tables(args.markdown, rows, args.step_model)
        print(target_table(rows), family_summary(rows), gap_table(rows), sep="\n\n")
        return
    if args.scale_1m:
        plan_1m()
        return
    if args.quick:
        args.n, args.family_n, args.instances = 10_000, 10_000, 1
    planners = args.planners.split(",")
    variants = [tuple(v.split("+")) for v in args.guards or ()]
    for guard in {g for v in variants for g in v}:
        Guard(guard)  # a bad name fails here, before any job
    todo = list(
        jobs(
            args.n,
            args.family_n,
            args.instances,
            planners,
            args.step_model,
            variants,
            args.pipeline_only,
        )
    )
    if args.families:
        keep = set(args.families.split(","))
        todo = [j for j in todo if j.family in keep or (j.family == MAIN_MIX and "main" in keep)]
    started = time.perf_counter()
    rows: list[Row] = []
    limit = () if args.preemption_limit is None else (args.preemption_limit,)
    with ProcessPoolExecutor(
        max_workers=args.workers, initializer=_set_preemption_limit, initargs=limit
    ) as pool:
        for done in pool.map(run_job, todo):
            rows += done
            if args.json:  # as it goes: a long run stopped early keeps what it measured
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
            r = done[0]
            print(
                f"{r.workload} {r.planner}: {r.throughput_tok_s:,.0f} tok/s (default)", flush=True
            )
    print(f"\n{len(todo)} jobs in {time.perf_counter() - started:.0f} s\n")
    if variants:
        print(guard_table(rows))
    else:
        print(target_table(rows), family_summary(rows), sep="\n\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    if args.markdown:
        write_tables(args.markdown, rows, args.step_model)


if __name__ == "__main__":
    main()
