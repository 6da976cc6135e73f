"""Benchmark the planners side by side in the engine simulator (llama-3.1-8b on a100-80g).

    python bench/planners.py [--scale 1.0] [--mixes rho1.4-s35,...] [--seed 0]
                             [--markdown docs/planners.md] [--plot docs/planners.png]
    python bench/planners.py --scale-1m      # planning time and peak memory at 1M requests
    python bench/planners.py --grid [--markdown docs/planners.md] [--grid-plot FILE]

Per mix (blend/workloads.py): T_opt, then for every planner the simulated throughput, its
ratio to DFS, the fraction of optimal (T_opt / makespan), the prefix sharing its order keeps
relative to DFS, the prefix-cache hit tokens relative to DFS, and the planning seconds.
Planners see only the warm-up sample's true output lengths (reveal_warmup). Every planner
runs on the default engine (SimConfig()); BlendServe's plan also names the per-step token
budget its blend is planned for (C_L + C_R + N_L + N_R), so it is run a second time on an
engine configured with it ("+budget"), and DFS and naive-blend on that same engine for a fair
comparison.
--grid runs dfs, naive-blend and blendserve over the rho x sharing grid of
blend/workloads.py (grid_mixes) and tabulates, per cell, BlendServe with its budget over DFS
on the default engine, the order alone (both at BlendServe's budget), naive-blend over DFS,
and BlendServe's fraction of T_opt.
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
from blend.simulate.gap import GapBreakdown, gap_breakdown
from blend.tree import build_compact_trie, order_sharing_ratio
from blend.workloads import MAIN_MIXES, blend_mix, default_cost, few_shot_prompts, grid_mixes

PLANNERS = ("fcfs", "random", "dfs", "naive-blend", "blendserve")
GRID_PLANNERS = ("dfs", "naive-blend", "blendserve")
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
    gap: GapBreakdown  # where the makespan goes beyond T_opt


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
        for p in ("dfs", "naive-blend", "blendserve"):
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
                gap=gap_breakdown(res, requests, cost, dfs_sharing, t_opt),
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


GAP_HEADER = (
    "| mix | planner | T_opt s | + bound's decode sharing | + extra work | + weight reads | "
    "+ other side | + overhead | = makespan s | drain s | KV discarded (tokens) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)
GAP_PLANNERS = ("dfs", "blendserve", "blendserve+budget")


def _gap_line(r: Row) -> str:
    g = r.gap

    def part(seconds: float) -> str:
        return f"{seconds:,.0f} ({seconds / g.makespan_s:.0%})"

    return (
        f"| {r.mix} | {r.planner} | {part(g.optimal_s)} | {part(g.bound_decode_sharing_s)} | "
        f"{part(g.extra_work_s)} | {part(g.weight_reads_s)} | {part(g.other_side_s)} | "
        f"{part(g.overhead_s)} | {g.makespan_s:,.0f} | {g.drain_s:,.0f} | "
        f"{g.kv_discarded_tokens:,} |"
    )


MARK_BEGIN, MARK_END = "<!-- bench/planners.py table -->", "<!-- end of table -->"
GAP_BEGIN, GAP_END = "<!-- bench/planners.py gap -->", "<!-- end of gap -->"
GRID_BEGIN, GRID_END = "<!-- bench/planners.py grid -->", "<!-- end of grid -->"


def write_markdown(path: Path, table: str, begin: str = MARK_BEGIN, end: str = MARK_END) -> None:
    """Put the table between the markers of `path` (or write a new file with just it)."""
    block = f"{begin}\n{table}\n{end}"
    text = path.read_text() if path.exists() else f"# Planner benchmark\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text = text.rstrip() + f"\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(head + block + tail)


@dataclass(frozen=True, slots=True)
class GridCell:
    rho: float
    sharing: float
    blendserve_vs_dfs: float  # blendserve+budget throughput / dfs on the default engine
    order_alone: float  # blendserve+budget / dfs+budget (same engine)
    naive_vs_dfs: float  # naive-blend / dfs, both on the default engine
    fraction_of_optimal: float  # blendserve+budget
    sharing_kept: float  # blendserve's order


def grid_cell(rho: float, sharing: float, rows: list[Row]) -> GridCell:
    by = {r.planner: r for r in rows}
    return GridCell(
        rho=rho,
        sharing=sharing,
        blendserve_vs_dfs=by["blendserve+budget"].vs_dfs,
        order_alone=by["blendserve+budget"].throughput_tok_s / by["dfs+budget"].throughput_tok_s,
        naive_vs_dfs=by["naive-blend"].vs_dfs,
        fraction_of_optimal=by["blendserve+budget"].fraction_of_optimal,
        sharing_kept=by["blendserve"].sharing_kept,
    )


def grid_table(cells: list[GridCell]) -> str:
    """rho down, sharing across; each cell: with budget / order alone / naive (of T_opt)."""
    sharings = sorted({c.sharing for c in cells})
    rhos = sorted({c.rho for c in cells})
    lines = [
        "| rho \\ sharing | " + " | ".join(f"{s:.0%}" for s in sharings) + " |",
        "|---|" + "---|" * len(sharings),
    ]
    at = {(c.rho, c.sharing): c for c in cells}
    for rho in rhos:
        row = []
        for s in sharings:
            c = at[(rho, s)]
            row.append(
                f"{c.blendserve_vs_dfs:.2f}x / {c.order_alone:.2f}x / {c.naive_vs_dfs:.2f}x "
                f"({c.fraction_of_optimal:.0%})"
            )
        lines.append(f"| {rho:.1f} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_grid_plot(cells: list[GridCell], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sharings = sorted({c.sharing for c in cells})
    rhos = sorted({c.rho for c in cells})
    at = {(c.rho, c.sharing): c for c in cells}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, field, title in (
        (axes[0], "blendserve_vs_dfs", "BlendServe (its budget) / DFS (default engine)"),
        (axes[1], "order_alone", "order alone: BlendServe / DFS, same budget"),
    ):
        grid = np.array([[getattr(at[(r, s)], field) for s in sharings] for r in rhos])
        image = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
        for i, j in np.ndindex(grid.shape):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color="white", fontsize=9)
        ax.set_xticks(range(len(sharings)), [f"{s:.0%}" for s in sharings])
        ax.set_yticks(range(len(rhos)), [f"{r:.1f}" for r in rhos])
        ax.set_xlabel("prefix sharing")
        ax.set_ylabel("rho (compute / memory)")
        ax.set_title(title, fontsize=10)
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def run_grid(scale: float, seed: int, markdown: Path | None, plot: Path | None) -> None:
    cells = []
    for (rho, sharing), requests in grid_mixes(scale=scale, seed=seed).items():
        rows = run_mix(f"rho{rho}-s{round(sharing * 100):02d}", requests, GRID_PLANNERS)
        cells.append(grid_cell(rho, sharing, rows))
    table = grid_table(cells)
    print(table)
    if markdown:
        write_markdown(markdown, table, GRID_BEGIN, GRID_END)
    if plot:
        write_grid_plot(cells, plot)


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
        f"{seconds:.1f} s "
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
    parser.add_argument("--grid", action="store_true", help="the rho x sharing grid")
    parser.add_argument("--grid-plot", type=Path, default=None, help="grid heatmaps (PNG)")
    args = parser.parse_args()
    if args.scale_1m:
        plan_1m()
        return
    if args.grid:
        run_grid(args.scale, args.seed, args.markdown, args.grid_plot)
        return
    print(HEADER)
    rows: list[Row] = []
    for name in args.mixes.split(","):
        rho, sharing = MAIN_MIXES[name]
        requests = blend_mix(rho, sharing, round(40_000 * args.scale), args.seed)
        rows += run_mix(name, requests, tuple(args.planners.split(",")))
    gap_table = (
        GAP_HEADER + "\n" + "\n".join(_gap_line(r) for r in rows if r.planner in GAP_PLANNERS)
    )
    print(gap_table)
    if args.markdown:
        write_markdown(args.markdown, HEADER + "\n" + "\n".join(_line(r) for r in rows))
        write_markdown(args.markdown, gap_table, GAP_BEGIN, GAP_END)
    if args.plot:
        write_plot(rows, args.plot)


if __name__ == "__main__":
    main()
