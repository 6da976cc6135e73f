"""Simulator fidelity: the pipeline run on the real vLLM CPU engine and in the simulator.

    python bench/fidelity.py [--workloads groups,long-tail,blend] [--num-blocks 192]
                             [--max-num-seqs 16] [--planners dfs,lpt,blendserve]
                             [--repeats 3] [--calibrate]
                             [--hardware cpu-local|FILE] [--out FILE]

Workloads (each 150 requests, listed in shuffled order; the planner sees a generic limit,
max_tokens 1024, and the engine is told each request's true length, min_tokens = max_tokens
= it, which stands in for the end-of-sequence token a real model would emit there):
  groups     30 groups of 5 sharing a 1,500-token random prefix (plus a short own suffix);
             each group has its own typical output length (8 to 256 tokens, lognormal)
  long-tail  short prompts under 10 shared templates; outputs mostly 8-32 tokens, one in
             twelve 380-500 tokens (the critical path an order can start first or last)
  blend      half long shared prompts (6 prefixes of 1,200 tokens) with 4-8-token answers,
             half short prompts (32-64 tokens) with 200-450-token outputs (BlendServe's case)

For each planner the very same objects drive both: blend.simulate.pipeline.PipelineSimulator
picks the warm-up sample and builds the admission policy (the warm-up, the re-plan from what
it measured, then in-order feeding or BlendServe's online dual scan); one policy feeds blend's
VllmEngine (the executor's engine wrapper: chunked prefill off, 128-token blocks, a KV cache
of --num-blocks blocks and 16 running requests at most, so that order matters), a fresh one
the simulator, both with the
engine's own settings (the same for every planner). Measured: the makespan from the first
step to the last finish (wall time), the prefix-cache hit rate from vLLM's counters, steps and
preemptions. --repeats runs the planners round-robin and takes each one's median;
--calibrate fits the step model on this engine right before (bench/calibrate.py's grid) and
predicts with that fit too. Per workload it reports the ratios of makespans that decide which
planner to pick (lpt / dfs, blendserve / dfs) measured and predicted, and their difference.
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

from blend.admission.feed import AdmissionFeed
from blend.admission.warmup import hand_over_if_ended
from blend.calibration.cpu_fit import BENCH_SHAPE, fit_step_model, model_spec, per_point
from blend.calibration.cpu_measure import (
    CPU_BLOCK_SIZE,
    MAX_BATCHED_TOKENS,
    decode_samples,
    default_models_dir,
    prefill_samples,
)
from blend.cost.model import CostModel, HardwareSpec, load_hardware
from blend.demo.model import ensure_tiny_model
from blend.engines.base import EngineConfig, EngineRequest
from blend.engines.settings import EngineSettings
from blend.planners import make_planner
from blend.simulate import SimRequest, optimal_makespan_s
from blend.simulate.io import Workload
from blend.simulate.pipeline import PipelineSimulator, SimulatedEngine
from blend.simulate.sequential_bound import sequential_bound

VISIBLE_MAX_TOKENS = 1024  # the output limit planners see


WORKLOADS = ("groups", "long-tail", "blend")


def make_workload(kind: str, seed: int, groups: int = 30, per_group: int = 5) -> Workload:
    """One of WORKLOADS (module docstring), 150 requests by default, shuffled."""
    rng = np.random.default_rng([seed, WORKLOADS.index(kind)])
    vocab = BENCH_SHAPE.vocab_size

    def tokens(n: int) -> list[int]:
        return rng.integers(16, vocab, n).tolist()

    requests = []
    if kind == "groups":
        for g in range(groups):
            shared = tokens(1500)
            typical = float(rng.choice([8, 32, 128, 256]))
            for i in range(per_group):
                length = int(np.clip(rng.lognormal(np.log(typical), 0.3), 4, 512))
                own = tokens(int(rng.integers(16, 97)))
                requests.append(SimRequest(f"g{g}-{i}", tuple(shared + own), length))
    elif kind == "long-tail":
        templates = [tokens(int(rng.integers(64, 257))) for _ in range(10)]
        for i in range(groups * per_group):
            long = i % 12 == 0
            length = int(rng.integers(380, 501)) if long else int(rng.integers(8, 33))
            prompt = templates[i % 10] + tokens(int(rng.integers(8, 65)))
            requests.append(SimRequest(f"t{i}", tuple(prompt), length))
    elif kind == "blend":
        prefixes = [tokens(1200) for _ in range(6)]
        for i in range(groups * per_group):
            if i % 2:
                prompt = prefixes[i % 6] + tokens(int(rng.integers(8, 33)))
                requests.append(SimRequest(f"b{i}", tuple(prompt), int(rng.integers(4, 9))))
            else:
                prompt = tokens(int(rng.integers(32, 65)))
                requests.append(SimRequest(f"b{i}", tuple(prompt), int(rng.integers(200, 451))))
    else:
        raise ValueError(f"unknown fidelity workload {kind!r}; known: {', '.join(WORKLOADS)}")
    perm = rng.permutation(len(requests))
    ordered = [requests[i] for i in perm]
    return Workload(ordered, [VISIBLE_MAX_TOKENS] * len(ordered))


class _Requests:
    """The workload's requests as the engine gets them (a RequestSource by index)."""

    def __init__(self, workload: Workload) -> None:
        self._requests = [
            EngineRequest(
                r.request_id,
                list(r.prompt_token_ids),
                {"max_tokens": r.output_len, "min_tokens": r.output_len, "temperature": 0.0},
            )
            for r in workload.requests
        ]

    def take(self, seqs: Any) -> list[EngineRequest]:
        return [self._requests[int(i)] for i in seqs]


def counters(engine: Any) -> dict[str, float]:
    return {m.name: float(getattr(m, "value", 0) or 0) for m in engine.get_metrics()}


def run_real(engine: Any, simulator: PipelineSimulator, workload: Workload) -> dict:
    """The pipeline on the real engine, fed by the simulator's own admission policy."""
    vllm_engine = engine._engine
    vllm_engine.reset_prefix_cache()
    before = counters(vllm_engine)
    policy, rest_of_run, _ = simulator.admission(engine.settings)
    feed = AdmissionFeed(policy, _Requests(workload))
    lengths = {r.request_id: r.output_len for r in workload.requests}
    started = time.perf_counter()
    busy_before = engine.busy_seconds
    first_step = engine.state().step
    done = 0
    for outputs in engine.generate(feed):
        for output in outputs:
            if output.error or output.n_output_tokens != lengths[output.request_id]:
                raise RuntimeError(f"{output.request_id}: not the requested output length")
            done += 1
        if feed.paused and rest_of_run is not None:  # the warm-up ended: re-plan, hand over
            hand_over_if_ended(policy, rest_of_run)
    wall = time.perf_counter() - started
    busy = engine.busy_seconds - busy_before
    after = counters(vllm_engine)
    queries = after.get("vllm:prefix_cache_queries", 0) - before.get("vllm:prefix_cache_queries", 0)
    hits = after.get("vllm:prefix_cache_hits", 0) - before.get("vllm:prefix_cache_hits", 0)
    return {
        "wall_s": wall,
        "engine_busy_s": busy,  # inside vLLM's add_request / step (the rest: blend's feed)
        "steps": engine.state().step - first_step,
        "hit_rate": hits / queries if queries else 0.0,
        "preemptions": after.get("vllm:num_preemptions", 0) - before.get("vllm:num_preemptions", 0),
        "n_done": done,
    }


def calibrate_here(engine: Any, cost: CostModel, num_blocks: int) -> HardwareSpec:
    """Fit the step model on this engine now (median of 3 repeats per grid point)."""
    rng = np.random.default_rng(1)
    raw = engine._engine
    samples = prefill_samples(raw, cost, rng, repeats=3)
    grid = [
        (n, c)
        for n in (1, 8, 16, 32)
        for c in (128, 1024)
        if n * -(-(c + 16) // CPU_BLOCK_SIZE) <= num_blocks
    ]
    for _ in range(3):
        samples += decode_samples(raw, rng, 8, grid)
    samples = [replace(s, seconds=s.wall_seconds) for s in samples]
    fit = fit_step_model(
        per_point(samples, "median"), cost.model, overlap=cost.hardware.overlap_compute_memory
    )
    print(
        f"calibrated here: overhead {fit.step_overhead_s * 1e3:.2f} ms, "
        f"{fit.flops / 1e9:.0f} GFLOP/s, {fit.bandwidth / 1e9:.1f} GB/s "
        f"(rel. rms {fit.rel_rms:.1%})"
    )
    return replace(
        cost.hardware,
        name="cpu-local-here",
        peak_flops=fit.flops,
        mem_bandwidth_bytes_s=fit.bandwidth,
        flops_efficiency=1.0,
        bandwidth_efficiency=1.0,
        step_overhead_s=fit.step_overhead_s,
        overlap_compute_memory=fit.overlap,
        source="bench/fidelity.py --calibrate",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--groups", type=int, default=30)
    parser.add_argument("--per-group", type=int, default=5)
    parser.add_argument("--num-blocks", type=int, default=192, help="KV blocks (128 tokens)")
    parser.add_argument(
        "--max-num-seqs",
        type=int,
        default=16,
        help="running requests at most (small: order matters)",
    )
    parser.add_argument("--hardware", default="cpu-local")
    parser.add_argument("--planners", default="dfs,lpt,blendserve")
    parser.add_argument("--calibrate", action="store_true", help="also fit the step model here")
    parser.add_argument("--repeats", type=int, default=1, help="round-robin runs per planner")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models-dir", type=Path, default=default_models_dir())
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    from blend.engines.vllm_engine import VllmEngine

    model_dir = ensure_tiny_model(args.models_dir, BENCH_SHAPE)
    engine = VllmEngine(
        EngineConfig(
            model_dir=model_dir,
            max_num_seqs=args.max_num_seqs,
            max_num_batched_tokens=MAX_BATCHED_TOKENS,
            num_gpu_blocks=args.num_blocks,
            dtype="bfloat16",
        )
    )
    state = engine.state()
    settings: EngineSettings = engine.settings
    sim_engine = SimulatedEngine(
        settings,
        block_size=state.block_size,
        kv_capacity_tokens=state.kv_blocks_total * state.block_size,
    )
    costs = {args.hardware: CostModel(model_spec(BENCH_SHAPE), load_hardware(args.hardware))}
    if args.calibrate:
        base = costs[args.hardware]
        costs["calibrated-here"] = CostModel(
            base.model, calibrate_here(engine, base, state.kv_blocks_total)
        )
    planners = args.planners.split(",")
    results = []
    for kind in args.workloads.split(","):
        workload = make_workload(kind, args.seed, args.groups, args.per_group)
        rows = measure(engine, workload, planners, costs, args.hardware, sim_engine, args.repeats)
        ratios = ratio_rows(rows, planners)
        print(f"-- {kind}: {len(workload.requests)} requests")
        for i, row in enumerate(rows):
            _print_row(row, header=i == 0)
        for r in ratios:
            by_profile = ", ".join(
                f"{label} {value:+.1f}" for label, value in r["error_points_by_profile"].items()
            )
            print(
                f"   {r['ratio']}: measured {r['measured']:.3f}, predicted {r['predicted']:.3f} "
                f"({r['error_points']:+.1f} points; by profile: {by_profile})"
            )
        results.append(
            {
                "workload": kind,
                "n_requests": len(workload.requests),
                "input_tokens": sum(len(r.prompt_token_ids) for r in workload.requests),
                "output_tokens": sum(r.output_len for r in workload.requests),
                "rows": rows,
                "ratios": ratios,
            }
        )
    engine.close()
    if args.out:
        summary = {
            "args": vars(args) | {"models_dir": str(args.models_dir), "out": str(args.out)},
            "settings": settings.label(),
            "num_blocks": state.kv_blocks_total,
            "workloads": results,
        }
        args.out.write_text(json.dumps(summary, indent=2))


def measure(
    engine: Any,
    workload: Workload,
    planners: list[str],
    costs: dict[str, CostModel],
    hardware: str,
    sim_engine: SimulatedEngine,
    repeats: int,
) -> list[dict]:
    """Every planner on the real engine (round-robin, median of `repeats`) and predicted."""
    cost = costs[hardware]
    settings = sim_engine.settings
    simulators = {
        name: PipelineSimulator(workload, make_planner(name, cost=cost), cost, engine=sim_engine)
        for name in planners
    }
    runs: dict[str, list[dict]] = {name: [] for name in simulators}
    for _ in range(repeats):  # round-robin: each planner sees the same machine drift
        for name, simulator in simulators.items():
            runs[name].append(run_real(engine, simulator, workload))
    t_opt = optimal_makespan_s(workload.requests, cost)
    t_seq = sequential_bound(workload.requests, cost, sim_engine.kv_capacity_tokens)
    rows = []
    for name in simulators:
        measured = sorted(runs[name], key=lambda m: m["wall_s"])[(len(runs[name]) - 1) // 2]
        predicted = {
            label: PipelineSimulator(
                workload, make_planner(name, cost=c), c, engine=sim_engine
            ).run(settings)
            for label, c in costs.items()
        }
        main_run = predicted[hardware].result
        rows.append(
            {
                "planner": name,
                "admission": predicted[hardware].plan.admission.value,
                "measured_makespan_s": measured["wall_s"],
                "measured_makespan_s_all": [m["wall_s"] for m in runs[name]],
                "measured_engine_busy_s": measured["engine_busy_s"],
                "predicted_makespan_s": main_run.makespan_s,
                "makespan_error": main_run.makespan_s / measured["wall_s"] - 1,
                "measured_hit_rate": measured["hit_rate"],
                "predicted_hit_rate": main_run.prefix_cache_hit_rate,
                "hit_rate_diff_points": 100
                * (main_run.prefix_cache_hit_rate - measured["hit_rate"]),
                "measured_steps": measured["steps"],
                "predicted_steps": main_run.n_steps,
                "measured_preemptions": measured["preemptions"],
                "predicted_preemptions": main_run.n_preemptions,
                "optimal_makespan_s": t_opt,
                "t_seq_makespan_s": t_seq.makespan_s,
                "load_average": os.getloadavg()[0],
                "predicted_makespan_s_other": {
                    label: run.result.makespan_s for label, run in predicted.items()
                },
            }
        )
    return rows


def ratio_rows(rows: list[dict], planners: list[str], base: str = "dfs") -> list[dict]:
    """Each planner's makespan over the base's, measured and predicted, and the difference
    in points (100 x predicted ratio - measured ratio)."""
    by = {r["planner"]: r for r in rows}
    if base not in by:
        return []
    out = []
    for name in planners:
        if name == base:
            continue
        measured = by[name]["measured_makespan_s"] / by[base]["measured_makespan_s"]
        predicted = by[name]["predicted_makespan_s"] / by[base]["predicted_makespan_s"]
        other = {
            label: seconds / by[base]["predicted_makespan_s_other"][label]
            for label, seconds in by[name]["predicted_makespan_s_other"].items()
        }
        out.append(
            {
                "ratio": f"{name} / {base}",
                "measured": measured,
                "predicted": predicted,
                "error_points": 100 * (predicted - measured),
                "predicted_by_profile": other,
                "error_points_by_profile": {k: 100 * (v - measured) for k, v in other.items()},
            }
        )
    return out


def _print_row(r: dict, header: bool) -> None:
    if header:
        print(
            f"{'planner':12} {'measured s':>10} {'predicted s':>11} {'err':>7} {'hit meas':>8} "
            f"{'hit pred':>8} {'pts':>6} {'steps m/p':>11} {'preempt m/p':>11}"
        )
    print(
        f"{r['planner']:12} {r['measured_makespan_s']:10.1f} {r['predicted_makespan_s']:11.1f} "
        f"{r['makespan_error']:7.1%} {r['measured_hit_rate']:8.1%} {r['predicted_hit_rate']:8.1%} "
        f"{r['hit_rate_diff_points']:6.1f} {r['measured_steps']:5d}/{r['predicted_steps']:<5d} "
        f"{r['measured_preemptions']:5.0f}/{r['predicted_preemptions']:<5d} "
        f"engine busy {r['measured_engine_busy_s']:.1f} s; "
        + " ".join(f"{h}: {v:.1f} s" for h, v in r["predicted_makespan_s_other"].items())
    )


if __name__ == "__main__":
    main()
