"""The offline LP sequence against T_opt, BlendServe and DFS on a Dolly-class workload family.

    python bench/lp_phase_plan.py [--sizes 2000,8000] [--seeds 0,1,2]
                                  [--step-models vllm,overlap] [--no-search]
                                  [--json bench/results/lp-phase-plan.json]

Workloads: draws of the `dolly` family (bench/workloads/families.py: Dolly-15k's eight
instruction classes, each seed its own class weights, spreads and templates) at each size.
Cost: llama-3.1-8b on a100-80g (as bench/planners.py), under vLLM's step model (attention
after the GEMMs) and, one knob changed, a step model where compute and memory traffic overlap
(`overlap`, the engine the BlendServe paper runs on; there T_opt is a tight bound).
Per workload:
  T_opt        the physical lower bound (blend/simulate/optimal.py)
  fluid-seq    the LP sequence's predicted makespan (blend/control/phase_plan.py), classes
               clustered on the TRUE lengths (the fluid model at its best: it is a prediction,
               not a run), inputs derived at the fluid model's own best settings (the least
               predicted makespan over the candidates the pipeline's search tries)
  fluid-min    the fluid model's own least makespan (one LP over time integrals)
  dfs, blendserve, lp-gate   simulated (blend/simulate/run.py plan_and_simulate): the
               pipeline as it runs for real (warm-up, re-plan from measured lengths, never
               true ones), each at the settings the pipeline's own search picks after the
               warm-up (--no-search: vLLM's defaults); lp-gate is the LP sequence run by the
               gate policy (blend/admission/lp_gate.py) in the real simulator
  lp-gate-job  the gate with its shares from the least-makespan LP instead (GateShares.JOB),
               at the settings lp-gate's search picked
Reported: makespans (s) and each over T_opt.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.workloads

from bench.workloads.families import draw_instance
from blend.admission.base import AdmissionPolicy
from blend.admission.dual_scan import scan_sequence
from blend.admission.lp_gate import GateShares, LpGateAdmission, LpGateOptions
from blend.control.classes import cluster_requests
from blend.control.fluid_inputs import class_fluid_inputs
from blend.control.phase_plan import fluid_min_makespan_s, phase_plan
from blend.cost.model import CostModel, load_hardware, load_model_spec
from blend.engines.settings import EngineSettings, candidate_settings, memory_centric_seqs
from blend.planners import make_planner
from blend.simulate.io import Workload
from blend.simulate.optimal import optimal_makespan_s
from blend.simulate.pipeline import (
    PipelineSimulator,
    PlannedRest,
    SimulatedEngine,
)
from blend.simulate.run import default_settings, plan_and_simulate

PLANNERS = ("dfs", "blendserve", "lp-gate")
COLUMNS = ("fluid_seq", "fluid_min", *PLANNERS, "lp-gate-job")


class JobSharesSimulator(PipelineSimulator):
    """The pipeline with the gate's shares from the least-makespan LP (GateShares.JOB)."""

    def policy(self, planned: PlannedRest, settings: EngineSettings) -> AdmissionPolicy:
        prompts = [r.prompt_token_ids for r in self.workload.requests]
        sequence = scan_sequence(
            prompts, planned.ordered, planned.ordered_estimates, planned.ordered_spread
        )
        options = LpGateOptions(shares=GateShares.JOB)
        return LpGateAdmission(sequence, self.cost, options, settings)


def bench_cost(step_model: str) -> CostModel:
    """llama-3.1-8b on a100-80g; "overlap": compute and memory traffic overlap in a step."""
    cost = CostModel(load_model_spec("llama-3.1-8b"), load_hardware("a100-80g"))
    if step_model == "overlap":
        hw = replace(cost.hardware, attention_after_gemm=False, roofline_sharpness=0.0)
        return CostModel(cost.model, hw)
    if step_model != "vllm":
        raise ValueError(f"unknown step model {step_model!r} (vllm or overlap)")
    return cost


def fluid_columns(
    workload: Workload, cost: CostModel, default: EngineSettings, optimal_s: float
) -> dict:
    """fluid_seq and fluid_min at the fluid model's own best engine settings: the least
    predicted makespan over the candidates the pipeline's search tries."""
    requests = workload.requests
    p = np.array([len(r.prompt_token_ids) for r in requests], dtype=np.float64)
    d = np.array([r.output_len for r in requests], dtype=np.float64)
    classes = cluster_requests(p, d).classes
    footprint = float(p.mean() + d.mean() / 2.0)
    longest = int((p + d).max()) + 1
    candidates = candidate_settings(
        default, longest, memory_centric_seqs(cost.kv_capacity_tokens, footprint)
    )
    best = None
    for settings in candidates:
        fluid = class_fluid_inputs(cost, settings, classes)
        plan = phase_plan(classes, fluid.params)
        if best is None or plan.makespan_s < best[1].makespan_s:
            best = (settings, plan, fluid)
    assert best is not None
    settings, plan, fluid = best
    fluid_min = fluid_min_makespan_s(classes, fluid.params)
    return {
        "fluid_seq": {
            "makespan_s": plan.makespan_s,
            "over_optimal": plan.makespan_s / optimal_s,
            "settings": settings.label(),
            "n_phases": len(plan.phases),
            "classes_per_phase": [int((phase.solution.x > 1e-9).sum()) for phase in plan.phases],
            "params": {
                "alpha_s": fluid.params.alpha_s,
                "beta_s_per_token": fluid.params.beta_s_per_token,
                "gamma_tok_s": fluid.params.gamma_tok_s,
                "B": fluid.params.slots,
                "C": fluid.params.chunk_tokens,
            },
        },
        "fluid_min": {"makespan_s": fluid_min, "over_optimal": fluid_min / optimal_s},
    }


def refresh_fluid(path: Path) -> list[dict]:
    """Recompute the fluid columns of the rows of an earlier run (cheap: no simulation)."""
    rows = json.loads(path.read_text())
    for row in rows:
        workload = draw_instance("dolly", row["n"], row["seed"]).workload
        cost = bench_cost(row["step_model"])
        settings = default_settings(workload, cost, chunked_prefill=True)
        row.update(fluid_columns(workload, cost, settings, row["optimal_s"]))
    return rows


def run_one(n: int, seed: int, step_model: str, search: bool) -> dict:
    instance = draw_instance("dolly", n, seed)
    workload = instance.workload
    requests = workload.requests
    cost = bench_cost(step_model)
    settings = default_settings(workload, cost, chunked_prefill=True)
    row: dict = {"workload": instance.name, "n": n, "seed": seed, "step_model": step_model}
    row["optimal_s"] = optimal_makespan_s(requests, cost)
    gate_settings = settings  # the settings lp-gate runs at (its search's pick)
    for planner in PLANNERS:
        started = time.perf_counter()
        report = plan_and_simulate(
            workload, planner, cost, SimulatedEngine(settings), search=search
        )
        result = report.run.result
        row[planner] = {
            "makespan_s": result.makespan_s,
            "over_optimal": result.makespan_s / row["optimal_s"],
            "settings": report.run.settings.label(),
            "preemptions": result.n_preemptions,
            "sim_s": time.perf_counter() - started,
        }
        if planner == "lp-gate":
            gate_settings = report.run.settings
    started = time.perf_counter()
    job = JobSharesSimulator(
        workload, make_planner("lp-gate"), cost, engine=SimulatedEngine(gate_settings)
    ).run(gate_settings)
    row["lp-gate-job"] = {
        "makespan_s": job.result.makespan_s,
        "over_optimal": job.result.makespan_s / row["optimal_s"],
        "settings": gate_settings.label(),
        "preemptions": job.result.n_preemptions,
        "sim_s": time.perf_counter() - started,
    }
    row.update(fluid_columns(workload, cost, settings, row["optimal_s"]))
    return row


def table(rows: list[dict]) -> str:
    columns = COLUMNS
    head = "| workload | step model | T_opt (s) | " + " | ".join(columns) + " |"
    lines = [head, "|" + "---|" * (3 + len(columns))]
    for r in rows:
        cells = [f"{r[c]['makespan_s']:.1f} ({r[c]['over_optimal']:.2f}x)" for c in columns]
        lines.append(
            f"| {r['workload']} | {r['step_model']} | {r['optimal_s']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    for model in sorted({r["step_model"] for r in rows}):
        mine = [r for r in rows if r["step_model"] == model]
        means = [np.mean([r[c]["over_optimal"] for r in mine]) for c in columns]
        lines.append(
            f"| mean over T_opt | {model} | | " + " | ".join(f"{m:.2f}x" for m in means) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2000,8000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--step-models", default="vllm,overlap")
    parser.add_argument("--no-search", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--refresh-fluid", type=Path, default=None, help="recompute the fluid columns of a JSON"
    )
    args = parser.parse_args()
    if args.refresh_fluid is not None:
        rows = refresh_fluid(args.refresh_fluid)
        print(table(rows))
        args.refresh_fluid.write_text(json.dumps(rows, indent=1) + "\n")
        return
    rows = []
    for model in args.step_models.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                rows.append(run_one(n, seed, model, search=not args.no_search))
                r = rows[-1]
                print(
                    f"{r['workload']} {model}: T_opt {r['optimal_s']:.1f} s, "
                    + ", ".join(f"{c} {r[c]['makespan_s']:.1f}" for c in COLUMNS),
                    flush=True,
                )
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
