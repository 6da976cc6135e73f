"""Simulator fidelity: the same workload and orders on the real vLLM CPU engine and simulated.

    python bench/fidelity.py [--groups 100] [--per-group 5] [--prefix 1500] [--num-blocks N]
                             [--hardware cpu-local|FILE] [--also-hardware FILE ...]
                             [--planners fcfs,dfs,blendserve] [--out FILE]

Workload: groups of requests sharing a long random prefix (plus a short own suffix), outputs
of random length (ignore_eos, so lengths are exact), listed in shuffled order - fcfs keeps that
order, dfs groups the prefixes. One in-process engine (chunked prefill off, 128-token blocks,
a KV cache of --num-blocks blocks so that order matters) runs each order with all requests
queued at once (strict FCFS admission, as the simulator assumes); the prefix cache is reset
between orders. Measured: the makespan, from the first step to the last finish, in wall time
(--clock wall, for a quiet machine) or in the engine process's CPU time (--clock cpu: leaves
out time other processes take on a shared machine, but counts every engine thread); both are
printed. The prefix cache hit rate comes from vLLM's counters
(vllm:prefix_cache_hits / vllm:prefix_cache_queries).
Predicted: blend.simulate with the calibrated cpu-local profile (bench/calibrate.py) and the
engine's own limits. With --calibrate, the step model is also fitted on this engine right
before the orders run (bench/calibrate.py's grid, shrunk to fit the small KV cache), so that
calibration and measurement see the same machine state; predictions with that fit are printed
beside the committed profile's. --repeats runs the orders round-robin that many times and
takes each order's median. Prints a table and, with --out, writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from calibrate import (
    BENCH_SHAPE,
    CPU_BLOCK_SIZE,
    MAX_BATCHED_TOKENS,
    add_prompts,
    decode_samples,
    default_models_dir,
    engine_num_blocks,
    fit_step_model,
    model_spec,
    per_point,
    prefill_samples,
    start_engine,
)

from blend.cost import CostModel, HardwareSpec, load_hardware
from blend.demo.model import ensure_tiny_model
from blend.planners import make_planner
from blend.simulate import SimConfig, SimRequest, optimal_makespan_s, simulate
from blend.simulate.io import Workload
from blend.simulate.run import plan_requests


def make_workload(
    groups: int, per_group: int, prefix: int, seed: int
) -> tuple[list[SimRequest], list[list[int]]]:
    rng = np.random.default_rng(seed)
    requests, prompts = [], []
    for g in range(groups):
        shared = rng.integers(16, BENCH_SHAPE.vocab_size, prefix).tolist()
        for i in range(per_group):
            own = rng.integers(16, BENCH_SHAPE.vocab_size, int(rng.integers(16, 97))).tolist()
            prompts.append(shared + own)
            requests.append(SimRequest(f"g{g}-{i}", tuple(shared + own), int(rng.integers(8, 129))))
    perm = rng.permutation(len(requests))
    return [requests[i] for i in perm], [prompts[i] for i in perm]


def planned_order(
    name: str, requests: list[SimRequest], cost: CostModel, config: SimConfig, hardware: str
) -> list[int] | None:
    """The planner's order (it sees the true output lengths); None if it does not exist here."""
    workload = Workload(requests=requests, max_tokens=[None] * len(requests))
    visible = plan_requests(workload, oracle_lengths=True, default_max_tokens=0, seed=0)
    try:
        planner = make_planner(name, seed=0, cost=cost)
    except ValueError as exc:
        print(f"planner {name!r}: {exc}")
        return None
    return planner.plan(visible).order


def calibrate_here(engine: Any, cost: CostModel, num_blocks: int, clock: str) -> HardwareSpec:
    """Fit the step model on this engine now (median of 3 repeats per grid point)."""
    rng = np.random.default_rng(1)
    samples = prefill_samples(engine, cost, rng, repeats=3)
    # Decode points whose KV (with 8 decode steps of growth) fits in the cache.
    grid = [
        (n, c)
        for n in (1, 8, 16, 32)
        for c in (128, 1024)
        if n * -(-(c + 16) // CPU_BLOCK_SIZE) <= num_blocks
    ]
    for _ in range(3):
        samples += decode_samples(engine, rng, 8, grid)
    if clock == "wall":
        samples = [replace(s, seconds=s.wall_seconds) for s in samples]
    fit = fit_step_model(
        per_point(samples, "median"), cost.model, overlap=cost.hardware.overlap_compute_memory
    )
    print(
        f"calibrated here: overhead {fit.step_overhead_s * 1e3:.2f} ms, "
        f"{fit.flops / 1e9:.0f} GFLOP/s, {fit.bandwidth / 1e9:.1f} GB/s "
        f"(rel. rms {fit.rel_rms:.1%})"
    )
    return HardwareSpec(
        name="cpu-local-here",
        peak_flops=fit.flops,
        mem_bandwidth_bytes_s=fit.bandwidth,
        mem_bytes=cost.hardware.mem_bytes,
        step_overhead_s=fit.step_overhead_s,
        kv_memory_fraction=cost.hardware.kv_memory_fraction,
        overlap_compute_memory=fit.overlap,
        source="bench/fidelity.py --calibrate",
    )


def counters(engine: Any) -> dict[str, float]:
    return {m.name: float(getattr(m, "value", 0) or 0) for m in engine.get_metrics()}


def run_engine(engine: Any, prompts: list[list[int]], outputs: list[int], order: list[int]) -> dict:
    """Run the requests in `order` to completion; wall time and prefix-cache counters."""
    engine.reset_prefix_cache()
    before = counters(engine)
    ids = add_prompts(engine, [prompts[i] for i in order], [outputs[i] for i in order])
    n_out = {rid: 0 for rid in ids}
    cached = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    steps = 0
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                n_out[out.request_id] = len(out.outputs[0].token_ids)
                cached += int(out.num_cached_tokens or 0)
        steps += 1
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    after = counters(engine)
    queries = after.get("vllm:prefix_cache_queries", 0) - before.get("vllm:prefix_cache_queries", 0)
    hits = after.get("vllm:prefix_cache_hits", 0) - before.get("vllm:prefix_cache_hits", 0)
    expected = {rid: outputs[i] for rid, i in zip(ids, order, strict=True)}
    if n_out != expected:
        raise RuntimeError("the engine did not produce the requested output lengths")
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "steps": steps,
        "hit_rate": hits / queries if queries else 0.0,
        "cached_tokens": cached,
        "preemptions": after.get("vllm:num_preemptions", 0) - before.get("vllm:num_preemptions", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--per-group", type=int, default=5)
    parser.add_argument("--prefix", type=int, default=1500)
    parser.add_argument("--num-blocks", type=int, default=None, help="KV blocks (128 tokens)")
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--hardware", default="cpu-local")
    parser.add_argument(
        "--also-hardware", nargs="*", default=[], help="more profiles to predict with"
    )
    parser.add_argument("--planners", default="fcfs,dfs,blendserve")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="the measured makespan: wall time (a quiet machine) or the engine process's CPU "
        "time (a shared one); use the clock the profile was calibrated with",
    )
    parser.add_argument(
        "--calibrate", action="store_true", help="also fit the step model here, right before"
    )
    parser.add_argument("--repeats", type=int, default=1, help="round-robin runs per order")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models-dir", type=Path, default=default_models_dir())
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    requests, prompts = make_workload(args.groups, args.per_group, args.prefix, args.seed)
    outputs = [r.output_len for r in requests]
    model_dir = ensure_tiny_model(args.models_dir, BENCH_SHAPE)
    engine = start_engine(
        model_dir,
        max_num_seqs=args.max_num_seqs,
        enable_prefix_caching=True,
        num_blocks=args.num_blocks,
    )
    num_blocks = engine_num_blocks(engine)
    cost = CostModel(model_spec(BENCH_SHAPE), load_hardware(args.hardware))
    config = SimConfig(
        max_num_batched_tokens=MAX_BATCHED_TOKENS,
        max_num_seqs=args.max_num_seqs,
        kv_capacity_tokens=num_blocks * CPU_BLOCK_SIZE,
        block_size=CPU_BLOCK_SIZE,
        chunked_prefill=False,
    )
    extra_costs = {h: CostModel(cost.model, load_hardware(h)) for h in args.also_hardware}
    orders = {}
    for name in args.planners.split(","):
        order = planned_order(name, requests, cost, config, args.hardware)
        if order is not None:
            orders[name] = order
    add_prompts(engine, [prompts[0][:64]], 2)  # warm-up
    while engine.has_unfinished_requests():
        engine.step()
    if args.calibrate:
        here = CostModel(cost.model, calibrate_here(engine, cost, num_blocks, args.clock))
        extra_costs["calibrated-here"] = here
    t_opt = optimal_makespan_s(requests, cost)
    runs: dict[str, list[dict]] = {name: [] for name in orders}
    for _ in range(args.repeats):  # round-robin: each order sees the same machine drift
        for name, order in orders.items():
            runs[name].append(run_engine(engine, prompts, outputs, order))
    rows = []
    for name, order in orders.items():
        clock_key = "wall_s" if args.clock == "wall" else "cpu_s"
        measured = sorted(runs[name], key=lambda m: m[clock_key])[(len(runs[name]) - 1) // 2]
        measured["makespan_s"] = measured[clock_key]
        predicted = simulate(requests, order, cost, config)
        rows.append(
            {
                "order": name,
                "measured_makespan_s": measured["makespan_s"],
                "measured_makespan_s_all": [m[clock_key] for m in runs[name]],
                "predicted_makespan_s": predicted.makespan_s,
                "makespan_error": predicted.makespan_s / measured["makespan_s"] - 1,
                "measured_hit_rate": measured["hit_rate"],
                "predicted_hit_rate": predicted.prefix_cache_hit_rate,
                "hit_rate_diff_points": 100
                * (predicted.prefix_cache_hit_rate - measured["hit_rate"]),
                "measured_steps": measured["steps"],
                "predicted_steps": predicted.n_steps,
                "measured_preemptions": measured["preemptions"],
                "predicted_preemptions": predicted.n_preemptions,
                "optimal_makespan_s": t_opt,
                "measured_wall_s": measured["wall_s"],
                "measured_cpu_s": measured["cpu_s"],
                "load_average": os.getloadavg()[0],
                "predicted_makespan_s_other": {
                    h: simulate(requests, order, c, config).makespan_s
                    for h, c in extra_costs.items()
                },
            }
        )
        _print_rows(rows[-1:], header=len(rows) == 1)
    summary = {
        "workload": vars(args) | {"models_dir": str(args.models_dir), "out": str(args.out)},
        "num_blocks": num_blocks,
        "n_requests": len(requests),
        "input_tokens": sum(len(p) for p in prompts),
        "output_tokens": sum(outputs),
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))


def _print_rows(rows: list[dict], header: bool) -> None:
    if header:
        print(
            f"{'order':10} {'wall s':>8} {'cpu s':>8} {'predicted s':>11} {'err':>7} "
            f"{'hit meas':>8} {'hit pred':>8} {'pts':>6} {'steps m/p':>11} {'preempt m/p':>11}"
        )
    for r in rows:
        print(
            f"{r['order']:10} {r['measured_wall_s']:8.1f} {r['measured_cpu_s']:8.1f} "
            f"{r['predicted_makespan_s']:11.1f} "
            f"{r['makespan_error']:7.1%} {r['measured_hit_rate']:8.1%} "
            f"{r['predicted_hit_rate']:8.1%} {r['hit_rate_diff_points']:6.1f} "
            f"{r['measured_steps']:5d}/{r['predicted_steps']:<5d} "
            f"{r['measured_preemptions']:5.0f}/{r['predicted_preemptions']:<5d} "
            + " ".join(f"{h}: {v:.1f} s" for h, v in r["predicted_makespan_s_other"].items())
        )


if __name__ == "__main__":
    main()
