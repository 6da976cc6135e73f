"""The warm-up re-plan's own peak memory: a stored plan executed with the null engine up to the
end of its re-plan, in a fresh child per code version.

    python bench/replan_memory.py STORE MODEL_DIR --dataset scale
    python bench/replan_memory.py STORE MODEL_DIR --plan-id PLAN --before HEAD

The child runs the execute stage (null engine, a new run) on a plan with a warm-up; as the
re-plan starts it resets the process's peak RSS counter (/proc/self/clear_refs, Linux), and
when the revision is stored it prints the peak and exits, so the line is the re-plan's peak
with what the executor holds at that point (printed too), not the loop's or the staging's.
With --before REV the code of git revision REV (its blend/ and sql/, `git archive`d beside
the store) runs first on the same store, then this tree's: compare the two lines of one run.
Each run writes its revision to the store (a new run each time); the warm-up requests are
answered again by the null engine. At 10M prompts a child takes 3-6 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def child(store_dir: str, model_dir: str, plan_id: str) -> None:
    from bench.executor_overhead import _null_engine_class
    from bench.scale import proc_status_gb
    from blend.engines.base import EngineConfig
    from blend.execute import stage
    from blend.execute.stage import ExecuteOptions, execute_plan
    from blend.store.database import Store

    replan = stage.replan_after_warmup
    marks: dict[str, Any] = {}

    def measured(*args: Any, **kwargs: Any) -> Any:
        Path("/proc/self/clear_refs").write_text("5")  # the peak counter from here
        marks["held_gb"] = proc_status_gb("VmRSS")
        started = time.perf_counter()
        revision = replan(*args, **kwargs)
        marks["replan_s"] = time.perf_counter() - started
        marks["peak_gb"] = proc_status_gb("VmHWM")
        return revision

    stage.replan_after_warmup = measured  # type: ignore[assignment]

    def done(report: Any) -> None:
        marks["estimate_sources"] = report.estimate_sources
        print(json.dumps(marks), flush=True)
        os._exit(0)  # the re-plan is what was measured: no need to run the rest

    null = _null_engine_class()
    execute_plan(
        Store.open(Path(store_dir)),
        plan_id,
        EngineConfig(model_dir=Path(model_dir)),
        options=ExecuteOptions(resume=False, on_replan=done),
        engine_factory=lambda config: null(config, 4),
    )
    raise SystemExit("the plan has no warm-up: nothing was re-planned")


def run_child(args: argparse.Namespace, plan_id: str, code: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    paths = [str(code)] if code is not None else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(REPO), env.get("PYTHONPATH", "")])
    argv = [sys.executable, __file__, args.store, args.model, "--child", "--plan-id", plan_id]
    load = os.getloadavg()[0]
    output = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    result["load"] = (load, os.getloadavg()[0])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="a store holding a plan with a warm-up")
    parser.add_argument("model", help="the model folder the plan's tokenizer came from")
    parser.add_argument("--plan-id", help="the plan (default: the dataset's newest)")
    parser.add_argument("--dataset", default="scale", help="whose newest plan (--plan-id unset)")
    parser.add_argument("--before", help="also run with this git revision's code, first")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(1, str(REPO))  # bench.executor_overhead (after a --before revision's code)
    if args.child:
        child(args.store, args.model, args.plan_id)
        return
    from bench.executor_overhead import export_revision, latest_plan_id
    from blend.store.database import Store

    plan_id = args.plan_id or latest_plan_id(Store.open(Path(args.store)), args.dataset)
    codes: list[tuple[str, Path | None]] = [("current", None)]
    if args.before:
        work = Path(args.store).parent
        codes.insert(0, (f"@{args.before}", export_revision(args.before, work)))
    for label, code in codes:
        r = run_child(args, plan_id, code)
        print(
            f"re-plan {label:<10} peak RSS {r['peak_gb']:.3f} GB (the executor held "
            f"{r['held_gb']:.3f} GB as it began)  {r['replan_s']:.1f} s  "
            f"sources {r['estimate_sources']}  load {r['load'][0]:.1f}-{r['load'][1]:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
