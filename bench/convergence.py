"""The paper's convergence experiment: revenue per GPU of the fleet policies against R*, by n.

    python bench/convergence.py [--engines 5,20,50,200,500] [--seeds 3] [--gpu-seconds 100000]
                                [--warmup 100] [--workers 2]
                                [--json bench/results/convergence.json]
                                [--plot docs/fleet-convergence.png]
    python bench/convergence.py --from-json bench/results/convergence.json --plot FILE
    python bench/convergence.py --quick      # n in {5, 50}, one seed, short runs

Setting (arXiv 2602.02987): B = 16, C = 256, classes (P, D) = (300, 1000) and (3000, 400),
lambda = [0.5, 0.5] per GPU, theta = [0.1, 0.1], c_p = 0.1, c_d = 0.2, the paper's vLLM
calibration alpha = 0.0174 s, beta = 6.2e-5 s/token, gamma = 45.45 tok/s. Policies:
Gate-and-Route (bundled LP), the same with the gate held while a decode waits in the buffer
(not in the paper), Prioritize-and-Route (per-phase LP), SLI-aware routing (SLI LP with every
class served >= 95% and mean time per output token <= 30 ms), and the Sarathi-style FCFS
baseline. Every run starts empty; rates count after --warmup seconds, over --gpu-seconds / n
seconds of simulated time (at least 200 s), so that every n sees about the same number of
requests. Revenue is the bundled one (c_p P + c_d D per finished request) for every policy.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blend.control.fleet import (
    FleetConfig,
    FleetPolicy,
    fcfs,
    gate_and_route,
    prioritize_and_route,
    simulate_fleet,
    sli_aware_routing,
)
from blend.control.fluid_lp import (
    ClassSpec,
    FluidParams,
    LpSolution,
    LpVariant,
    Prices,
    SliConstraints,
    solve_fluid_lp,
)

PARAMS = FluidParams(
    alpha_s=0.0174, beta_s_per_token=6.2e-5, gamma_tok_s=45.45, slots=16, chunk_tokens=256
)
PRICES = Prices(prefill_per_token=0.1, decode_per_token=0.2)
CLASSES = (
    ClassSpec("short-prompt", 300, 1000, arrival_rate=0.5, abandonment=0.1),
    ClassSpec("long-prompt", 3000, 400, arrival_rate=0.5, abandonment=0.1),
)
SLI = SliConstraints(min_served_fraction=0.95, max_tpot_s=0.03)
POLICIES = ("gate-and-route", "gate-and-route+hold", "prioritize-and-route", "sli-aware", "fcfs")


def solutions() -> dict[LpVariant, LpSolution]:
    return {
        LpVariant.BUNDLED: solve_fluid_lp(CLASSES, PARAMS, PRICES),
        LpVariant.PER_PHASE: solve_fluid_lp(CLASSES, PARAMS, PRICES, LpVariant.PER_PHASE),
        LpVariant.SLI_AWARE: solve_fluid_lp(CLASSES, PARAMS, PRICES, LpVariant.SLI_AWARE, SLI),
    }


def make_policy(name: str, engines: int, lp: dict[LpVariant, LpSolution]) -> FleetPolicy:
    build: dict[str, Callable[[], FleetPolicy]] = {
        "gate-and-route": lambda: gate_and_route(lp[LpVariant.BUNDLED], engines),
        "gate-and-route+hold": lambda: gate_and_route(
            lp[LpVariant.BUNDLED], engines, hold_while_buffered=True
        ),
        "prioritize-and-route": lambda: prioritize_and_route(lp[LpVariant.PER_PHASE], engines),
        "sli-aware": lambda: sli_aware_routing(lp[LpVariant.SLI_AWARE], engines),
        "fcfs": lambda: fcfs(lp[LpVariant.BUNDLED], engines),
    }
    if name not in build:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(build)}")
    return build[name]()


@dataclass(frozen=True, slots=True)
class Job:
    policy: str
    engines: int
    seed: int
    horizon_s: float
    warmup_s: float


def run_one(job: Job) -> dict[str, Any]:
    """One simulated run, as a JSON row."""
    lp = solutions()
    started = time.process_time()
    result = simulate_fleet(
        CLASSES,
        PARAMS,
        PRICES,
        make_policy(job.policy, job.engines, lp),
        FleetConfig(horizon_s=job.horizon_s, warmup_s=job.warmup_s, seed=job.seed),
    )
    return {
        "policy": job.policy,
        "engines": job.engines,
        "seed": job.seed,
        "horizon_s": job.horizon_s,
        "warmup_s": job.warmup_s,
        "mixed_engines": result.mixed_engines,
        "revenue_per_gpu_s": result.revenue_per_gpu_s,
        "per_phase_revenue_per_gpu_s": result.per_phase_revenue_per_gpu_s,
        "mean_decode_buffer": result.mean_buffered,
        "mean_decode_buffer_per_gpu": result.mean_buffered / job.engines,
        "peak_decode_buffer": result.peak_buffered,
        "classes": [
            {
                "name": c.name,
                "served_fraction": c.served_fraction,
                "completions_per_gpu_s": c.completions_per_gpu_s,
                "mean_tpot_s": c.mean_tpot_s,
                "abandoned_waiting": c.abandoned_waiting,
                "abandoned_buffered": c.abandoned_buffered,
                "mean_waiting_per_gpu": c.mean_waiting / job.engines,
            }
            for c in result.classes
        ],
        "cpu_s": time.process_time() - started,
    }


def summarise(rows: list[dict[str, Any]], lp: dict[LpVariant, LpSolution]) -> dict[str, Any]:
    r_star = lp[LpVariant.BUNDLED].revenue_per_gpu_s
    table = []
    for policy in dict.fromkeys(r["policy"] for r in rows):
        for n in sorted({r["engines"] for r in rows if r["policy"] == policy}):
            mine = [r for r in rows if r["policy"] == policy and r["engines"] == n]
            revenue = np.array([r["revenue_per_gpu_s"] for r in mine])
            table.append(
                {
                    "policy": policy,
                    "engines": n,
                    "seeds": len(mine),
                    "revenue_mean": float(revenue.mean()),
                    "revenue_std": float(revenue.std(ddof=1)) if len(mine) > 1 else 0.0,
                    "gap_to_r_star": float(1 - revenue.mean() / r_star),
                    "decode_buffer_per_gpu": float(
                        np.mean([r["mean_decode_buffer_per_gpu"] for r in mine])
                    ),
                    "served_fraction": [
                        float(np.mean([r["classes"][i]["served_fraction"] for r in mine]))
                        for i in range(len(CLASSES))
                    ],
                    "mean_tpot_s": [
                        float(np.mean([r["classes"][i]["mean_tpot_s"] for r in mine]))
                        for i in range(len(CLASSES))
                    ],
                }
            )
    return {
        "r_star": r_star,
        "r_star_per_phase_lp": lp[LpVariant.PER_PHASE].revenue_per_gpu_s,
        "r_star_sli_lp": lp[LpVariant.SLI_AWARE].revenue_per_gpu_s,
        "lp_bundled": lp[LpVariant.BUNDLED].table(),
        "table": table,
    }


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    styles = {
        "gate-and-route": ("o-", "C0"),
        "gate-and-route+hold": ("s-", "C2"),
        "prioritize-and-route": ("^--", "C1"),
        "sli-aware": ("v--", "C4"),
        "fcfs": ("x-", "C3"),
    }
    for policy in dict.fromkeys(row["policy"] for row in summary["table"]):
        rows = [row for row in summary["table"] if row["policy"] == policy]
        marker, color = styles.get(policy, ("o-", "k"))
        ax.errorbar(
            [row["engines"] for row in rows],
            [row["revenue_mean"] for row in rows],
            yerr=[row["revenue_std"] for row in rows],
            fmt=marker,
            color=color,
            capsize=3,
            label=policy,
        )
    ax.axhline(summary["r_star"], color="k", lw=1, label=f"R* = {summary['r_star']:.1f}")
    ax.axhline(summary["r_star_sli_lp"], color="C4", lw=0.8, ls=":", label="R* of the SLI LP")
    low = summary["r_star"] * 0.88  # an axis that shows the gaps; lower points are noted
    for row in summary["table"]:
        if row["revenue_mean"] < low:
            ax.annotate(
                f"{row['policy']} n={row['engines']}: {row['revenue_mean']:.0f} (below)",
                (row["engines"], low),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=7,
                arrowprops={"arrowstyle": "->", "lw": 0.6},
            )
    ax.set_ylim(low, summary["r_star"] * 1.01)
    ax.set_xscale("log")
    ax.set_xlabel("GPUs n")
    ax.set_ylabel("revenue per GPU per second")
    ax.set_title("Fleet policies vs the fluid LP (B=16, C=256, 2 classes)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="5,20,50,200,500")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--gpu-seconds", type=float, default=100_000.0)
    parser.add_argument("--warmup", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("bench/results/convergence.json"))
    parser.add_argument("--plot", type=Path, default=Path("docs/fleet-convergence.png"))
    parser.add_argument("--from-json", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    lp = solutions()
    if args.from_json:
        rows = json.loads(args.from_json.read_text())["runs"]
    else:
        engines = [5, 50] if args.quick else [int(v) for v in args.engines.split(",")]
        seeds, gpu_s = (1, 5_000.0) if args.quick else (args.seeds, args.gpu_seconds)
        jobs = [
            Job(p, n, seed, args.warmup + max(200.0, gpu_s / n), args.warmup)
            for n in sorted(engines, reverse=True)
            for p in args.policies.split(",")
            for seed in range(seeds)
        ]
        with ProcessPoolExecutor(args.workers) as pool:
            rows = []
            for row in pool.map(run_one, jobs):
                rows.append(row)
                print(
                    f"{row['policy']:>22} n={row['engines']:>4} seed={row['seed']} "
                    f"revenue/GPU={row['revenue_per_gpu_s']:7.2f} "
                    f"buffer/GPU={row['mean_decode_buffer_per_gpu']:.3f} cpu={row['cpu_s']:.1f}s",
                    flush=True,
                )
    summary = summarise(rows, lp)
    for row in summary["table"]:
        print(
            f"{row['policy']:>22} n={row['engines']:>4} revenue/GPU={row['revenue_mean']:7.2f}"
            f" +- {row['revenue_std']:.2f}  gap to R*={100 * row['gap_to_r_star']:5.2f}%"
        )
    if not args.from_json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "runs": rows}, indent=1))
    plot(summary, args.plot)


if __name__ == "__main__":
    main()
