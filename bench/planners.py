"""Benchmark the planners side by side in the engine simulator (llama-3.1-8b on a100-80g).

    python bench/planners.py [--scale 1.0] [--mixes rho1.4-s35,...] [--seed 0]
                             [--markdown docs/planners.md] [--plot docs/planners.png]
    python bench/planners.py --scale-1m      # planning time and peak memory at 1M requests

Per mix (blend/workloads.py): T_opt, then for every planner the simulated throughput, its
ratio to DFS, the fraction of optimal (T_opt / makespan), the prefix sharing its order keeps
relative to DFS, the prefix-cache hit tokens relative to DFS, and the planning seconds.
Planners see only the warm-up sample's true output lengths (reveal_warmup). Every planner
runs on the default engine (SimConfig()); BlendServe's plan also names the per-step token
budget its blend is planned for (C_L + C_R + N_L + N_R), so it is run a second time on an
engine configured with it ("+budget"), and DFS on that same engine for a fair comparison.
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blend.planners import Plan, PlanRequest, make_planner
from blend.planners.blendserve import reveal_warmup
from blend.simulate import SimConfig, SimRequest, optimal_makespan_s, simulate
from blend.tree import build_compact_trie, order_sharing_ratio
from blend.workloads import MAIN_MIXES, blend_mix, default_cost

PLANNERS = ("fcfs", "random", "dfs", "naive-blend", "blendserve")
MAX_TOKENS = 32768  # the output limit the planners see (an upper bound, never the estimate)


@dataclass(frozen=True, slots=True)
class Row:
    mix: str
    planner: str
    engine_budget: int  # max_num_batched_tokens of the simulated engine
    throughput_tok_s: float
    vs_dfs: float  # throughput / DFS throughput on the default engine
    fraction_of_optimal: float  # T_opt / makespan
    sharing_kept: float  # order's prefix sharing (each scanner's stream) / DFS sharing
    hits_vs_dfs: float  # prefix-cache hit tokens / DFS's on the default engine
    plan_s: float


def stream_sharing(prompts: list[np.ndarray], plan: Plan) -> float:
    """Sharing of the order with each side's stream read on its own (W, L, R, or all)."""
    streams: dict[str | None, list[int]] = {}
    for index, side in zip(plan.order, plan.sides, strict=True):
        streams.setdefault(side, []).append(index)
    order = [i for stream in streams.values() for i in stream]
    return order_sharing_ratio(prompts, order)


def run_mix(name: str, requests: list[SimRequest], planners: tuple[str, ...]) -> list[Row]:
    cost = default_cost()
    prompts = [np.asarray(r.prompt_token_ids) for r in requests]
    dfs_sharing = build_compact_trie(prompts).sharing_ratio()
    t_opt = optimal_makespan_s(requests, cost, sharing_ratio=dfs_sharing)
    plan_requests = reveal_warmup(
        [PlanRequest(r.request_id, r.prompt_token_ids, MAX_TOKENS) for r in requests],
        [r.output_len for r in requests],
        warmup_fraction=0.01,
        seed=0,
    )
    plans: dict[str, tuple[Plan, float]] = {}
    for planner in planners:
        started = time.perf_counter()
        plans[planner] = (make_planner(planner).plan(plan_requests), time.perf_counter() - started)
    default = SimConfig()
    runs: list[tuple[str, Plan, SimConfig, float]] = [
        (p, plan, default, s) for p, (plan, s) in plans.items()
    ]
    if "blendserve" in plans:
        budget = int(plans["blendserve"][0].params["max_num_batched_tokens"])
        tuned = SimConfig(max_num_batched_tokens=max(256, budget))
        for p in ("dfs", "blendserve"):
            if p in plans:
                runs.append((f"{p}+budget", plans[p][0], tuned, plans[p][1]))
    results = {
        label: (plan, cfg, s, simulate(requests, plan.order, cost, cfg))
        for label, plan, cfg, s in runs
    }
    base = results["dfs"][3] if "dfs" in results else next(iter(results.values()))[3]
    rows = []
    for label, (plan, cfg, seconds, res) in results.items():
        rows.append(
            Row(
                mix=name,
                planner=label,
                engine_budget=cfg.max_num_batched_tokens,
                throughput_tok_s=res.throughput_tok_s,
                vs_dfs=res.throughput_tok_s / base.throughput_tok_s,
                fraction_of_optimal=t_opt / res.makespan_s,
                sharing_kept=stream_sharing(prompts, plan) / dfs_sharing if dfs_sharing else 1.0,
                hits_vs_dfs=res.prefix_cache_hit_tokens / max(1, base.prefix_cache_hit_tokens),
                plan_s=seconds,
            )
        )
        print(_line(rows[-1]), flush=True)
    return rows


def _line(r: Row) -> str:
    return (
        f"| {r.mix} | {r.planner} | {r.engine_budget} | {r.throughput_tok_s:,.0f} | "
        f"{r.vs_dfs:.2f}x | {r.fraction_of_optimal:.1%} | {r.sharing_kept:.1%} | "
        f"{r.hits_vs_dfs:.1%} | {r.plan_s:.2f} |"
    )


HEADER = (
    "| mix (rho, sharing) | planner | engine tokens/step | throughput tok/s | vs DFS | "
    "of optimal | sharing kept vs DFS | cache hits vs DFS | plan s |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


MARK_BEGIN, MARK_END = "<!-- bench/planners.py table -->", "<!-- end of table -->"


def write_markdown(path: Path, table: str) -> None:
    """Put the table between the markers of `path` (or write a new file with just it)."""
    block = f"{MARK_BEGIN}\n{table}\n{MARK_END}"
    text = (
        path.read_text() if path.exists() else f"# Planner benchmark\n\n{MARK_BEGIN}\n{MARK_END}\n"
    )
    if MARK_BEGIN not in text or MARK_END not in text:
        text = text.rstrip() + f"\n\n{MARK_BEGIN}\n{MARK_END}\n"
    head, rest = text.split(MARK_BEGIN, 1)
    tail = rest.split(MARK_END, 1)[1]
    path.write_text(head + block + tail)


def write_plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mixes = list(dict.fromkeys(r.mix for r in rows))
    labels = list(dict.fromkeys(r.planner for r in rows))
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for k, label in enumerate(labels):
        values = [
            next((r.vs_dfs for r in rows if r.mix == m and r.planner == label), 0.0) for m in mixes
        ]
        ax.bar(np.arange(len(mixes)) + k * width, values, width, label=label)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xticks(np.arange(len(mixes)) + 0.4 - width / 2, mixes)
    ax.set_ylabel("throughput vs DFS (default engine)")
    ax.set_title("Planners in the simulator: llama-3.1-8b on a100-80g")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def plan_1m(n: int = 1_000_000, mean_tokens: int = 500, seed: int = 0) -> None:
    """Plan n requests of ~mean_tokens tokens (25% under 200 shared few-shot prefixes)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(mean_tokens) - 0.08, 0.4, n), 16, 4096).astype(np.int64)
    flat = rng.integers(1000, 128000, int(lengths.sum()), dtype=np.int32)
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    prefixes = rng.integers(1000, 128000, (200, 300), dtype=np.int32)
    shared = np.flatnonzero(rng.random(n) < 0.25)
    for i in shared[lengths[shared] > 320].tolist():
        flat[offsets[i] : offsets[i] + 300] = prefixes[i % 200]
    outputs = rng.integers(1, 2000, n)
    requests = [
        PlanRequest(
            f"r{i}",
            flat[offsets[i] : offsets[i + 1]],
            4096,
            int(outputs[i]) if i % 100 == 0 else None,
        )
        for i in range(n)
    ]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    started, cpu_started = time.perf_counter(), time.process_time()
    plan = make_planner("blendserve").plan(requests)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"blendserve planned {n:,} requests ({int(lengths.sum()):,} tokens) in {seconds:.1f} s "
        f"({cpu_seconds:.1f} s CPU); "
        f"peak RSS {rss:.2f} GiB (inputs alone {rss_before:.2f} GiB); "
        f"n_split {plan.params['n_split']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="mix size x 40k requests")
    parser.add_argument("--mixes", default=",".join(MAIN_MIXES))
    parser.add_argument("--planners", default=",".join(PLANNERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG here")
    parser.add_argument("--scale-1m", action="store_true", help="time planning 1M requests")
    args = parser.parse_args()
    if args.scale_1m:
        plan_1m()
        return
    print(HEADER)
    rows: list[Row] = []
    for name in args.mixes.split(","):
        rho, sharing = MAIN_MIXES[name]
        requests = blend_mix(rho, sharing, round(40_000 * args.scale), args.seed)
        rows += run_mix(name, requests, tuple(args.planners.split(",")))
    if args.markdown:
        write_markdown(args.markdown, HEADER + "\n" + "\n".join(_line(r) for r in rows))
    if args.plot:
        write_plot(rows, args.plot)


if __name__ == "__main__":
    main()
