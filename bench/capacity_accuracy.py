"""Capacity prediction against the simulated truth, at k = 1, 2, 4, 8 engines.

    python bench/capacity_accuracy.py [--n 5000] [--seeds 0,1] [--max-engines 8]
                                      [--families dolly,...] [--json FILE] [--markdown FILE]

Per workload family draw (bench/workloads/families.py): a draw of 2n requests is shuffled and
halved; the first half is "last night" (its true lengths become the history hints the plan
stage reads from earlier results), the second is tonight's dataset. The prediction
(blend/plan/capacity.py) sees tonight's prompts and max_tokens plus the history, never tonight's
true lengths; the truth is the same k-engine pipeline simulation (blend/simulate/
multi_engine.py, same history) run with tonight's true lengths. Also shown: the prediction
without history (every estimate at max_tokens until the warm-up: an upper bound). Target:
|prediction - truth| / truth <= 15% at every k. llama-3.1-8b on a100-80g, vLLM defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.workloads

from bench.workloads.families import FAMILIES, draw_instance
from bench.workloads.generators import default_cost
from blend.plan.capacity import predict_capacity
from blend.planners import EstimateSource, LengthHint, PlanRequest, estimate_outputs
from blend.simulate.io import Workload
from blend.simulate.multi_engine import MultiEngineSimulator
from blend.simulate.pipeline import DEFAULT_MAX_TOKENS, SimulatedEngine
from blend.simulate.run import default_settings

TARGET = 0.15  # largest relative error allowed


@dataclass(frozen=True, slots=True)
class Row:
    workload: str
    k: int
    truth_s: float  # simulated makespan with true lengths (s)
    predicted_s: float  # with history (s)
    error: float  # (predicted - truth) / truth
    band: float  # the prediction's band, relative
    within_band: bool  # the truth lies inside the band
    no_history_s: float  # prediction without history (s)
    no_history_error: float


def halves(family: str, n: int, seed: int) -> tuple[Workload, list[LengthHint]]:
    """Tonight's workload and last night's results as history hints."""
    draw = draw_instance(family, 2 * n, seed).workload
    order = np.random.default_rng(seed).permutation(len(draw.requests))
    last, tonight = order[:n].tolist(), np.sort(order[n:]).tolist()
    history = [
        LengthHint(r.prompt_token_ids, r.output_len, EstimateSource.HISTORY)
        for r in (draw.requests[i] for i in last)
    ]
    workload = Workload([draw.requests[i] for i in tonight], [draw.max_tokens[i] for i in tonight])
    return workload, history


def run_workload(family: str, n: int, seed: int, max_engines: int) -> list[Row]:
    cost = default_cost()
    tonight, history = halves(family, n, seed)
    requests = [
        PlanRequest(r.request_id, r.prompt_token_ids, DEFAULT_MAX_TOKENS if m is None else m)
        for r, m in zip(tonight.requests, tonight.max_tokens, strict=True)
    ]
    start = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
    deadline = start + timedelta(hours=8)
    predicted = predict_capacity(
        requests,
        estimate_outputs(requests, history),
        cost,
        start=start,
        deadline=deadline,
        max_engines=max_engines,
        history=history,
    )
    blind = predict_capacity(
        requests,
        estimate_outputs(requests),
        cost,
        start=start,
        deadline=deadline,
        max_engines=max_engines,
    )
    engine = SimulatedEngine(default_settings(tonight, cost, chunked_prefill=True))
    truth = MultiEngineSimulator(tonight, cost, engine, history=history)
    rows = []
    for p, b in zip(predicted.predictions, blind.predictions, strict=True):
        true_s = truth.run(p.k).makespan_s
        rows.append(
            Row(
                workload=f"{family}#{seed}",
                k=p.k,
                truth_s=true_s,
                predicted_s=p.makespan_s,
                error=p.makespan_s / true_s - 1,
                band=p.high_s / p.makespan_s - 1,
                within_band=p.low_s <= true_s <= p.high_s,
                no_history_s=b.makespan_s,
                no_history_error=b.makespan_s / true_s - 1,
            )
        )
    return rows


def markdown(rows: Sequence[Row]) -> str:
    lines = [
        "| workload | k | truth (s) | predicted (s) | error | band | in band | "
        "no history (s) | error |",
        "|---|---:|---:|---:|---:|---:|:---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.workload} | {r.k} | {r.truth_s:.0f} | {r.predicted_s:.0f} | "
            f"{r.error:+.1%} | +-{r.band:.1%} | {'yes' if r.within_band else 'no'} | "
            f"{r.no_history_s:.0f} | {r.no_history_error:+.1%} |"
        )
    errors = np.abs([r.error for r in rows])
    within = int(np.sum(errors <= TARGET))
    lines.append(
        f"\n{within} of {len(rows)} predictions within {TARGET:.0%} of the truth; "
        f"mean |error| {errors.mean():.1%}, max {errors.max():.1%}; "
        f"{sum(r.within_band for r in rows)} truths inside the band."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="tonight's requests per workload")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--max-engines", type=int, default=8)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    rows: list[Row] = []
    for family in args.families.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for row in run_workload(family, args.n, seed, args.max_engines):
                print(
                    f"{row.workload:>18} k={row.k} truth {row.truth_s:8.1f} s predicted "
                    f"{row.predicted_s:8.1f} s ({row.error:+.1%}); no history "
                    f"{row.no_history_error:+.1%}",
                    flush=True,
                )
                rows.append(row)
    table = markdown(rows)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
