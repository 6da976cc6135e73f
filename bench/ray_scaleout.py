"""Scale-out on Ray: the demo plan run by 1 engine and by 2 engines side by side (vLLM CPU).

One plan (the bundled demo dataset, depth-first, no warm-up, so every configuration runs the
same work), three runs of it, each in a fresh subprocess (vLLM and Ray keep process-wide state):
  local-1: one engine in the driver process (its torch threads may use every core);
  local-1-1t: the same with OMP_NUM_THREADS=1 (one thread, as a 1-CPU Ray actor gets);
  ray-1:   one engine as a Ray actor holding 1 CPU (Ray caps its threads at 1);
  ray-2:   two engine actors of 1 CPU each, one share of the plan each (blend/scale).
Throughput = (prompt + output tokens) / the run's span, first request handed over to last
one finished (engine starts and Ray's own start are outside it; they are reported beside);
per engine, its own span (from its parts): the difference is the skew of the engines' starts.
    python bench/ray_scaleout.py [--repeats 3] [--out bench/results/ray-scaleout.json]
Repeats run the modes interleaved (a, b, c, a, b, c, ...); each mode's median throughput is
compared (a machine shared with other work drifts between runs).
On a 2-core machine, ray-2 against ray-1 is the scale-out ratio of engines of equal size;
against local-1 it is what a second engine adds when one engine alone already has both cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys
from pathlib import Path
from blend.engines.base import EngineConfig
from blend.execute.stage import ExecuteOptions, default_engine_factory, execute_plan
from blend.store.results import finished_parts, read_metadata
from blend.execute.ray_fleet import execute_on_ray
from blend.store.database import Store, fetch_dicts
import pyarrow.parquet as pq
def engine_spans(run_dir):
    spans = {}
    for part in finished_parts(run_dir):
        tag = read_metadata(part).get("blend.engine_tag", "local")
        t = pq.read_table(part, columns=["started_at", "finished_at"]).to_pydict()
        lo, hi = spans.get(tag, (min(t["started_at"]), max(t["finished_at"])))
        spans[tag] = (min(lo, *t["started_at"]), max(hi, *t["finished_at"]))
    return {tag: (hi - lo).total_seconds() for tag, (lo, hi) in spans.items()}
if __name__ == "__main__":
    store, plan_id, mode, model_dir = Store.open(sys.argv[1]), *sys.argv[2:5]
    gib = float(sys.argv[5])
    config = EngineConfig(model_dir=Path(model_dir), kv_cache_gib=gib)
    engines = int(mode.split("-")[1])
    options = ExecuteOptions(engines=engines)
    if mode.startswith("local-"):
        report = execute_plan(store, plan_id, config, options=options)
    else:
        import ray
        ray.init(num_cpus=engines, include_dashboard=False, log_to_driver=False)
        report = execute_on_ray(store, plan_id, config, run_id=None, options=options,
                                engine_factory=default_engine_factory)
    with store.connect() as con:
        span = fetch_dicts(con, "SELECT epoch(max(finished_at) - min(started_at)) AS s "
                                "FROM results WHERE run_id = ?", [report.run_id])[0]["s"]
    print("RESULT " + json.dumps({
        "mode": mode, "run_id": report.run_id, "status": report.status,
        "n_requests": report.n_requests, "input_tokens": report.input_tokens,
        "output_tokens": report.output_tokens, "cached_tokens": report.cached_tokens,
        "engine_start_s": report.engine_start_s, "wall_s": report.wall_s, "span_s": span,
        "tokens_per_s": (report.input_tokens + report.output_tokens) / span,
        "output_tokens_per_s": report.output_tokens / span,
        "engine_spans_s": engine_spans(report.results_dir),
    }))
"""


MODE_ENV = {"local-1-1t": {"OMP_NUM_THREADS": "1"}}


def plan_demo(store_dir: Path) -> tuple[str, Path]:
    from blend.demo.model import ensure_tiny_model
    from blend.ingest import ingest_file
    from blend.pipeline.chain import pipeline_input
    from blend.plan.stage import PlanOptions, plan_dataset
    from blend.profile.stage import profile_dataset
    from blend.store.database import Store

    store = Store.open(store_dir)
    model_dir = ensure_tiny_model(store.models_dir)
    path, dataset = pipeline_input(store, None, None)
    ingest_file(store, path, dataset)
    profile_dataset(store, dataset, model_dir)
    options = PlanOptions(planner="dfs", warmup_fraction=0.0, search_settings=False)
    plan = plan_dataset(store, dataset, options, model_dir=model_dir)
    return plan.plan_id, model_dir


def run_mode(store_dir: Path, plan_id: str, mode: str, model_dir: Path, gib: float) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(store_dir), plan_id, mode, str(model_dir), str(gib)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "VLLM_CONFIGURE_LOGGING": "0", **MODE_ENV.get(mode, {})},
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{mode} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kv-cache-gib", type=float, default=0.25)
    parser.add_argument("--modes", default="local-1,local-1-1t,ray-1,ray-2")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="Also write the numbers here")
    args = parser.parse_args()
    store_dir = Path(tempfile.mkdtemp(prefix="blend-ray-bench-")) / "store"
    plan_id, model_dir = plan_demo(store_dir)
    modes = args.modes.split(",")
    results: dict[str, list[dict]] = {mode: [] for mode in modes}
    for _ in range(args.repeats):
        for mode in modes:
            r = run_mode(store_dir, plan_id, mode, model_dir, args.kv_cache_gib)
            results[mode].append(r)
            spans = ", ".join(f"{t} {s:.1f} s" for t, s in sorted(r["engine_spans_s"].items()))
            print(
                f"{mode:10s} {r['n_requests']} rows, "
                f"{r['input_tokens'] + r['output_tokens']:,} tokens in {r['span_s']:.1f} s: "
                f"{r['tokens_per_s']:,.0f} tok/s ({r['output_tokens_per_s']:,.0f} out tok/s); "
                f"engine start {r['engine_start_s']:.1f} s, wall {r['wall_s']:.1f} s; "
                f"per engine span {spans}"
            )
    median = {m: statistics.median(r["tokens_per_s"] for r in rs) for m, rs in results.items()}
    summary: dict = {"cpu_cores": os.cpu_count(), "median_tokens_per_s": median, "runs": results}
    if "ray-2" in median:
        for base in ("ray-1", "local-1", "local-1-1t"):
            if base in median:
                ratio = median["ray-2"] / median[base]
                summary[f"ray-2 / {base}"] = ratio
                print(f"ray-2 / {base}: {ratio:.2f}x median tokens/s")
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
