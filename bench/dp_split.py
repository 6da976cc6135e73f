"""Data-parallel scaling: k simulated engines against k times one engine, per split.

    python bench/dp_split.py [--n 80000] [--family-n 20000] [--seeds 0] [--ks 2,4,8]
                             [--splits blendserve,round-robin,random] [--workers 1]
                             [--families dolly,...]
                             [--json bench/results/dp-split.json] [--markdown FILE]
    python bench/dp_split.py --quick        # 4000 requests per workload, seed 0, k = 2, 4

Workloads: the paper's four main mixes (BurstGPT + MMLU + OpenVid at fixed rho and sharing,
`--n` requests, output limits as bench/planners.py sets them) and `--seeds` draws of every
other family of bench/workloads/families.py (`--family-n` requests). Each runs the pipeline
(blend/simulate/multi_engine.py: one warm-up spread over the engines, one BlendServe plan,
k shares, each engine's online dual scan) for llama-3.1-8b on a100-80g at vLLM's offline
default settings, the same for every k and split. The ratio is k engines' throughput over k
times one engine's (1.0: linear scaling; the target is >= 0.95 at k = 4, the paper reports
3.78-3.88x at DP = 4). Splits of the same plan: BlendServe's DP split, round-robin and random.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.workloads

from bench.workloads.families import FAMILIES, draw_instance, paper_mix_workload
from bench.workloads.generators import MAIN_MIXES, default_cost
from blend.cost.model import CostModel
from blend.simulate.io import Workload
from blend.simulate.multi_engine import SPLITS, MultiEngineRun, MultiEngineSimulator
from blend.simulate.pipeline import SimulatedEngine
from blend.simulate.run import default_settings

MAIN_MIX = "main-mix (paper)"


@dataclass(frozen=True, slots=True)
class Job:
    workload: str  # a main mix name, or "<family>#<seed>"
    family: str
    n: int
    ks: tuple[int, ...]
    splits: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Row:
    workload: str
    family: str
    n: int
    k: int
    split: str
    makespan_s: float  # the slowest engine's (s)
    throughput_tok_s: float
    speedup: float  # throughput over one engine's
    ratio: float  # speedup / k
    imbalance: float  # slowest engine's makespan over the mean engine's
    ratio_bound: float  # the best ratio the longest request allows: min(1, T_1 / (k T_crit))
    engine_makespans_s: list[float]
    simulate_s: float  # wall time of this row's simulation (s)


def load_workload(job: Job) -> Workload:
    if job.family == MAIN_MIX:
        return paper_mix_workload(job.workload, job.n)
    family, seed = job.workload.split("#")
    return draw_instance(family, job.n, int(seed)).workload


def run_job(job: Job) -> list[Row]:
    workload = load_workload(job)
    cost = default_cost()
    engine = SimulatedEngine(default_settings(workload, cost, chunked_prefill=True))
    simulator = MultiEngineSimulator(workload, cost, engine)
    rows: list[Row] = []
    started = time.perf_counter()
    one = simulator.run(1)
    critical = critical_path_s(workload, cost)
    rows.append(_row(job, one, one, critical, time.perf_counter() - started))
    for k in job.ks:
        for split in job.splits:
            started = time.perf_counter()
            run = simulator.run(k, split)
            rows.append(_row(job, run, one, critical, time.perf_counter() - started))
    return rows


def critical_path_s(workload: Workload, cost: CostModel) -> float:
    """The longest request's decode alone (s): its output tokens x the step that only reads
    the weights (plus the fixed step overhead). No engine finishes sooner, whatever k."""
    longest = max(r.output_len for r in workload.requests)
    solo_step = cost.model.weight_bytes / cost.hardware.effective_bandwidth
    return longest * (solo_step + cost.hardware.step_overhead_s)


def _row(
    job: Job, run: MultiEngineRun, one: MultiEngineRun, critical_s: float, seconds: float
) -> Row:
    speedup = run.throughput_tok_s / one.throughput_tok_s
    return Row(
        workload=job.workload,
        family=job.family,
        n=job.n,
        k=run.k,
        split=run.split if run.k > 1 else "-",
        makespan_s=run.makespan_s,
        throughput_tok_s=run.throughput_tok_s,
        speedup=speedup,
        ratio=speedup / run.k,
        imbalance=run.imbalance,
        ratio_bound=min(1.0, one.makespan_s / (run.k * critical_s)),
        engine_makespans_s=[round(s.makespan_s, 2) for s in run.shares],
        simulate_s=seconds,
    )


def jobs(
    n: int,
    family_n: int,
    seeds: Sequence[int],
    ks: tuple[int, ...],
    splits: tuple[str, ...],
    families: Sequence[str],
) -> Iterator[Job]:
    for name in MAIN_MIXES:
        yield Job(name, MAIN_MIX, n, ks, splits)
    for family in families:
        if family == "main-mix":
            continue  # the paper's four mixes stand for it
        for seed in seeds:
            yield Job(f"{family}#{seed}", family, family_n, ks, splits)


def markdown(rows: Sequence[Row], ks: Sequence[int], splits: Sequence[str]) -> str:
    """Per workload: the ratio (throughput / (k x one engine's)) of every k and split, and
    the mean over the main mixes and over all workloads."""
    header = [f"k={k} {s}" for k in ks for s in splits] + [f"k={k} bound" for k in ks]
    lines = [
        "| workload | one engine (tok/s) | " + " | ".join(header) + " |",
        "|---|---:|" + "---:|" * len(header),
    ]
    by_workload: dict[str, dict[tuple[int, str], Row]] = {}
    for row in rows:
        by_workload.setdefault(row.workload, {})[(row.k, row.split)] = row
    columns: dict[tuple[int, str], list[float]] = {}
    mix_columns: dict[tuple[int, str], list[float]] = {}
    for workload, cells in by_workload.items():
        one = cells[(1, "-")]
        values = []
        for k in ks:
            for split in splits:
                row = cells.get((k, split))
                values.append("-" if row is None else f"{row.ratio:.3f}")
                if row is not None:
                    columns.setdefault((k, split), []).append(row.ratio)
                    if row.family == MAIN_MIX:
                        mix_columns.setdefault((k, split), []).append(row.ratio)
        for k in ks:
            bounded = next((r for (kk, _), r in cells.items() if kk == k), None)
            values.append("-" if bounded is None else f"{bounded.ratio_bound:.3f}")
        lines.append(f"| {workload} | {one.throughput_tok_s:,.0f} | " + " | ".join(values) + " |")
    for label, table in (("mean, main mixes", mix_columns), ("mean, all", columns)):
        means = [
            f"**{np.mean(table[(k, s)]):.3f}**" if (k, s) in table else "-"
            for k in ks
            for s in splits
        ] + [""] * len(ks)
        lines.append(f"| {label} | | " + " | ".join(means) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=80000, help="requests per main mix")
    parser.add_argument("--family-n", type=int, default=20000, help="requests per family draw")
    parser.add_argument("--seeds", default="0", help="family draws (comma-separated seeds)")
    parser.add_argument("--ks", default="2,4,8", help="engine counts besides 1")
    parser.add_argument("--splits", default=",".join(SPLITS))
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--families", default=",".join(FAMILIES), help="families besides the mixes ('' for none)"
    )
    parser.add_argument("--quick", action="store_true", help="4000 requests, seed 0, k = 2, 4")
    parser.add_argument("--json", type=Path, help="write every row here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    args = parser.parse_args()
    if args.quick:
        args.n, args.family_n, args.seeds, args.ks = 4000, 4000, "0", "2,4"
    ks = tuple(int(k) for k in args.ks.split(","))
    splits = tuple(args.splits.split(","))
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        parser.error(f"--splits: unknown {unknown}; known {', '.join(SPLITS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    families = [f for f in args.families.split(",") if f]
    unknown_families = sorted(set(families) - set(FAMILIES))
    if unknown_families:
        parser.error(f"--families: unknown {unknown_families}; known {', '.join(FAMILIES)}")
    todo = list(jobs(args.n, args.family_n, seeds, ks, splits, families))
    rows: list[Row] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for result in pool.map(run_job, todo):
            for row in result:
                print(
                    f"{row.workload:>22} k={row.k} {row.split:<11} ratio {row.ratio:.3f} "
                    f"(x{row.speedup:.2f}) imbalance {row.imbalance:.3f} "
                    f"[{row.simulate_s:.0f} s]",
                    flush=True,
                )
            rows.extend(result)
    table = markdown(rows, ks, splits)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
