"""Plan stage at scale: wall time and peak RSS of `plan_dataset` on a profiled store.

    python bench/plan_scale.py --rows 1000000 3000000 --work /tmp/plan-work
    python bench/plan_scale.py --rows 1000000 --before 6297a8b --work /tmp/plan-work
    python bench/plan_scale.py --rows 1000000 --before-code /tmp/old-tree --work /tmp/plan-work
    python bench/plan_scale.py --search-error 100000 --samples 20000 10000

For each row count a store is built once and kept in the work folder (reused by later runs):
few-shot prompts (bench/workloads/scale_prompts.py) ingested and profiled by bench/scale.py's
own stages with the byte-level tokenizer stand-in (ids ~ 31-bit words, as a real vocabulary's
are large: no small-int sharing). Then `plan_dataset` runs in a fresh child process (peak RSS
from os.wait4; seconds exclude the child's imports); with --before REV, first with the code of
git revision REV on the same store (side by side under the same load). Each line carries
the load average (1 min). --search-error N instead times the settings search
(`simulate/settings_search.search_plan`, what the re-plan runs after the warm-up) of one
N-request plan on all N requests and on each --samples size, and what each sample's choice
costs in the full search's simulation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DATASET = "scale"  # bench/scale.py's dataset name


def build_store(work: Path, rows: int, max_rss_gb: float) -> Path:
    """A profiled few-shot store of `rows` prompts under `work` (built once, then reused)."""
    from bench import scale
    from bench.workloads.scale_prompts import write_prompts
    from blend.demo.model import ensure_tiny_model

    folder = work / f"fewshot-{rows}"
    store = folder / "store"
    if (folder / "profiled").exists():
        return store
    folder.mkdir(parents=True, exist_ok=True)
    model = ensure_tiny_model(work / "models")
    path = folder / "prompts.jsonl"
    started = time.perf_counter()
    write_prompts(path, "fewshot", rows)
    print(f"{rows:,} prompts written in {time.perf_counter() - started:.0f} s", flush=True)
    args = {"store": str(store), "input": str(path), "model": str(model), "tokenizer": "bytes"}
    scale.report("ingest", scale.run_child("ingest", args, max_rss_gb))
    scale.report("profile", scale.run_child("profile", args, max_rss_gb))
    path.unlink()
    (folder / "profiled").touch()
    return store


def stage_plan(args: argparse.Namespace) -> dict[str, Any]:
    """Plan the store's dataset in this child: seconds, peak RSS and what the plan holds."""
    from blend.plan.stage import PlanOptions, plan_dataset
    from blend.store.database import Store

    options = PlanOptions(planner=args.planner, hardware="h100-80g", model_spec="llama-3.1-8b")
    started, cpu = time.perf_counter(), time.process_time()
    report = plan_dataset(Store.open(args.store), DATASET, options)
    result: dict[str, Any] = {
        "seconds": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "plan_peak_gb": _peak_rss_gb(),
        "rows": report.n_requests,
        "n_warmup": report.n_warmup,
        "sharing_ratio": report.sharing_ratio,
        "dfs_sharing_ratio": report.dfs_sharing_ratio,
        "plan_seconds": report.plan_seconds,
    }
    return result


def search_error(n: int, limits: list[int], seed: int = 0) -> None:
    """The sampled search against the full one on one n-request plan (bench/planners.py's
    1M workload shape): per sample size, the settings and feed chosen, the predicted
    makespan, the seconds, and what the choice costs in the full search's simulation (the
    regret: 0 when the sample picks what the full search picks)."""
    import numpy as np

    from bench.workloads.generators import few_shot_prompts
    from blend.cost.resolve import resolve_cost
    from blend.engines.settings import memory_centric_seqs, vllm_default_settings
    from blend.planners import PlanRequest, estimate_outputs, make_planner
    from blend.simulate.settings_search import SearchInputs, search_plan
    from blend.simulate.types import SimConfig

    cost = resolve_cost("llama-3.1-8b", "h100-80g", None, 1)
    prompts, rng = few_shot_prompts(n, 500, seed)
    outputs = rng.integers(1, 2000, n)
    requests = [
        PlanRequest(f"r{i}", p, 4096, int(outputs[i]) if i % 100 == 0 else None)
        for i, p in enumerate(prompts)
    ]
    plan = make_planner("blendserve", cost=cost).plan(requests)
    estimates = estimate_outputs(requests)
    order = np.asarray(plan.order, dtype=np.int64)
    inputs = SearchInputs(
        prompts=[requests[i].prompt_token_ids for i in order.tolist()],
        estimates=estimates.tokens[order],
        spread=estimates.spread[order],
        max_tokens=np.full(n, 4096),
        admission=plan.admission,
        residuals=estimates.residuals,
        guessed=estimates.guessed[order],
    )
    default = vllm_default_settings(cost.hardware, 8192)
    footprint = float(np.mean([len(p) for p in prompts]) + estimates.tokens.mean() / 2)
    searches = {}
    for limit in limits:
        started = time.perf_counter()
        search = search_plan(
            inputs,
            cost,
            default,
            SimConfig(),
            memory_centric=memory_centric_seqs(cost.kv_capacity_tokens, footprint),
            max_model_len=8192,
            max_simulated=limit,
        )
        searches[limit] = (search, time.perf_counter() - started)
    full = searches[max(limits)][0]
    by_shape = {(t.settings.label(), t.feed.label()): t.makespan_s for t in full.trials}
    best = full.best.makespan_s
    for search, seconds in searches.values():
        choice = (search.best.settings.label(), search.best.feed.label())
        in_full = by_shape.get(choice)
        print(
            json.dumps(
                {
                    "n": n,
                    "simulated": search.n_simulated,
                    "seconds": round(seconds, 1),
                    "choice": ", ".join(choice),
                    "predicted_s": round(search.best.makespan_s, 1),
                    "same_as_full": choice == (full.best.settings.label(), full.best.feed.label()),
                    "regret": None if in_full is None else round(in_full / best - 1, 4),
                    "predicted_over_full_sim": None
                    if in_full is None
                    else round(search.best.makespan_s / in_full, 4),
                    "load": os.getloadavg()[0],
                }
            ),
            flush=True,
        )


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def run_plan(store: Path, planner: str, max_rss_gb: float, code: Path | None) -> dict[str, Any]:
    """Run stage_plan in a fresh child (with `code` first on its path): result, peak RSS."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    command = [sys.executable, __file__, "--child", "--store", str(store), "--planner", planner]
    load_before, started = os.getloadavg()[0], time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    killed, reaped = threading.Event(), threading.Event()
    from bench.scale import _watch

    watch = threading.Thread(target=_watch, args=(child, max_rss_gb, killed, reaped), daemon=True)
    watch.start()
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    reaped.set()
    load = (load_before, os.getloadavg()[0])
    peak = usage.ru_maxrss * 1024 / 1e9
    if killed.is_set():
        return {
            "killed": True,
            "seconds": time.perf_counter() - started,
            "peak_rss_gb": peak,
            "load": load,
        }
    if os.waitstatus_to_exitcode(status) != 0:  # reported, so the other side still runs
        return {
            "failed": os.waitstatus_to_exitcode(status),
            "seconds": time.perf_counter() - started,
            "peak_rss_gb": peak,
            "load": load,
        }
    result: dict[str, Any] = json.loads(output.decode().strip().splitlines()[-1])
    result.update(peak_rss_gb=peak, load=load)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--work", type=Path, required=False, default=Path("/tmp/plan-scale"))
    parser.add_argument("--planner", default="blendserve")
    parser.add_argument("--before", help="also plan with this git revision's code")
    parser.add_argument(
        "--before-code", type=Path, help="also plan with the code in this folder (blend/, sql/)"
    )
    parser.add_argument("--max-rss-gb", type=float, default=12.0, help="kill a child past this")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help="build the stores, no plan")
    parser.add_argument(
        "--search-error",
        type=int,
        metavar="N",
        help="only: the sampled search against the full one on an N-request plan",
    )
    parser.add_argument(
        "--samples", type=int, nargs="+", default=[20_000, 10_000], help="with --search-error"
    )
    args = parser.parse_args()
    if args.search_error:
        sys.path.insert(0, str(REPO))
        search_error(args.search_error, [args.search_error, *args.samples])
        return
    if args.child:
        print(json.dumps(stage_plan(args)), flush=True)
        return
    sys.path.insert(0, str(REPO))
    for rows in args.rows:
        store = build_store(args.work, rows, args.max_rss_gb)
        if args.build_only:
            continue
        runs = []
        if args.before:
            from bench.executor_overhead import export_revision

            code = export_revision(args.before, args.work)
            runs.append((f"@{args.before}", code))
        if args.before_code:
            runs.append((f"code {args.before_code.name}", args.before_code.resolve()))
        runs.append(("now", None))
        for label, code in runs:
            r = run_plan(store, args.planner, args.max_rss_gb, code)
            print(f"{rows:,} {label}: {json.dumps(r)}", flush=True)


if __name__ == "__main__":
    main()
