"""The executor's own cost: a stored plan executed with the null engine (answers at once).

    python bench/executor_overhead.py                          # 100k and 1M requests
    python bench/executor_overhead.py --rows 1000000 --before HEAD
    python bench/executor_overhead.py --rows 100000 --warmup   # the plan's warm-up and re-plan
    python bench/executor_overhead.py --work /tmp/eo --before HEAD  # again: stores reused

For each row count, a setup child writes short unique prompts (JSONL), ingests, profiles
(the demo tokenizer) and plans them (dfs; without --warmup no warm-up sample, so the run is the
executor's feed, rows, parts, progress and lineage and nothing else). Then the execute stage
runs in a fresh child with the null engine (blend/engines/null_engine.py): requests/s and
peak RSS (os.wait4's ru_maxrss of the child). With --before REV it also runs with the
executor of git revision REV (its blend/ and sql/, exported by `git archive`, first on the
child's PYTHONPATH; the null engine from this tree where REV has none), before the current
code, on the same plan: compare the two lines of one run only (the machine is shared; each
line carries the 1-minute load average at its start and end).

`stage_execute_null` is the execute stage with the null engine, for other benchmarks
(bench/scale.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DATASET = "overhead"
_TEXT = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda omicron sigma tau upsilon "
    "phi chi psi omega river stone cloud field light shadow north south"
)


def stage_execute_null(
    store: Any,
    dataset: str,
    model_dir: Path,
    plan_id: str | None = None,
    *,
    resume: bool = True,
    output_tokens: int = 4,
) -> dict[str, Any]:
    """Execute `plan_id` (default: the dataset's latest plan) with the null engine.

    resume: go on with the plan's latest unfinished run where there is one (a killed run is
    finished, not duplicated), else a new run. Returns seconds (this execution, engine start
    included), rows written by it, requests/s, and the run's id and status.
    """
    from blend.engines.base import EngineConfig
    from blend.execute.stage import ExecuteOptions, execute_plan

    null_engine = _null_engine_class()
    plan_id = plan_id or latest_plan_id(store, dataset)
    engines: list[Any] = []

    def engine_factory(config: EngineConfig) -> Any:
        engines.append(null_engine(config, output_tokens))
        return engines[-1]

    started = time.perf_counter()
    report = execute_plan(
        store,
        plan_id,
        EngineConfig(model_dir=model_dir),
        options=ExecuteOptions(resume=resume),
        engine_factory=engine_factory,
    )
    ended, ended_cpu = time.perf_counter(), time.process_time()
    seconds = ended - started
    rows = report.n_requests - report.n_skipped
    # the steady part: from the first engine's first step (an older revision's null engine
    # does not record it: the whole run then)
    first = getattr(engines[0], "first_step_at", None) if engines else None
    loop_wall, loop_cpu = (ended - first[0], ended_cpu - first[1]) if first else (seconds, 0.0)
    return {
        "start_s": seconds - loop_wall,
        "loop_s": loop_wall,
        "loop_requests_per_s": rows / loop_wall if loop_wall else 0.0,
        "loop_requests_per_cpu_s": rows / loop_cpu if loop_cpu else 0.0,
        "seconds": seconds,
        "rows": rows,
        "requests_per_s": rows / seconds if seconds else 0.0,
        "engine_busy_s": report.engine_busy_s,
        "run_id": report.run_id,
        "status": report.status,
        "n_skipped": report.n_skipped,
        "n_errors": report.n_errors,
    }


def latest_plan_id(store: Any, dataset: str) -> str:
    from blend.store.database import fetch_dicts

    with store.connect(views=False) as con:
        rows = fetch_dicts(
            con,
            "SELECT plan_id FROM plans WHERE dataset = $d ORDER BY created_at DESC LIMIT 1",
            {"d": dataset},
        )
    if not rows:
        raise SystemExit(f"no plan of dataset {dataset!r}: plan it first")
    return str(rows[0]["plan_id"])


def _null_engine_class() -> Any:
    """NullEngine, from the code on the path, else from this tree (an older revision's code
    has none; it only needs blend.engines.base and .loop, which that code has)."""
    try:
        from blend.engines.null_engine import NullEngine
    except ImportError:
        path = REPO / "blend" / "engines" / "null_engine.py"
        spec = importlib.util.spec_from_file_location("_bench_null_engine", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.NullEngine
    return NullEngine


def write_prompts(path: Path, rows: int, seed: int = 0) -> None:
    """`rows` short unique prompts (5-16 words), max_tokens 16."""
    rng = random.Random(seed)
    words = _TEXT.split()
    with path.open("w", buffering=1 << 20) as f:
        for i in range(rows):
            prompt = f"({i}) " + " ".join(rng.choices(words, k=rng.randint(4, 15)))
            f.write(json.dumps({"custom_id": f"q{i}", "prompt": prompt, "max_tokens": 16}) + "\n")


# -- children ---------------------------------------------------------------------------------


def child_setup(args: argparse.Namespace) -> dict[str, Any]:
    from blend.ingest import ingest_file
    from blend.plan.stage import PlanOptions, plan_dataset
    from blend.profile.stage import profile_dataset
    from blend.store.database import Store

    store = Store.open(Path(args.store))
    model = Path(args.model)
    seconds = {}
    started = time.perf_counter()
    source = Path(args.store).parent / "prompts.jsonl"
    write_prompts(source, args.rows)
    seconds["write"] = time.perf_counter() - started
    for name, run in (
        ("ingest", lambda: ingest_file(store, source, DATASET)),
        ("profile", lambda: profile_dataset(store, DATASET, model, **_in_process())),
        (
            "plan",
            lambda: plan_dataset(
                store,
                DATASET,
                PlanOptions(planner="dfs", warmup_fraction=float(args.plan_warmup)),
                model_dir=model,
            ),
        ),
    ):
        started = time.perf_counter()
        run()
        seconds[name] = time.perf_counter() - started
    source.unlink()
    return {"seconds": seconds, "plan_id": latest_plan_id(store, DATASET)}


def _in_process() -> dict[str, Any]:
    """The profile's tokenizer in this process, where the profile can be told so: the
    benchmark is about the executor, and the prompts are short."""
    try:
        from blend.profile.token_batches import TokenizeOptions
    except ImportError:
        return {}
    return {"tokenize": TokenizeOptions(workers=1)}


def child_execute(args: argparse.Namespace) -> dict[str, Any]:
    import blend
    from blend.store.database import Store

    store = Store.open(Path(args.store))
    result = stage_execute_null(store, DATASET, Path(args.model), args.plan_id, resume=False)
    result["code"] = str(Path(blend.__file__).parent.parent)
    return result


def run_child(kind: str, flags: dict[str, str], code: Path | None = None) -> dict[str, Any]:
    """One child process; its result (last stdout line), peak RSS (GB), load average."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    argv = [item for key, value in flags.items() for item in (f"--{key}", value)]
    load_before = os.getloadavg()[0]
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, *argv], stdout=subprocess.PIPE, env=env
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child {kind} failed (exit {os.waitstatus_to_exitcode(status)})")
    result: dict[str, Any] = json.loads(output.decode().strip().splitlines()[-1])
    result["peak_rss_gb"] = usage.ru_maxrss * 1024 / 1e9  # ru_maxrss is KiB on Linux
    result["load"] = (load_before, os.getloadavg()[0])
    return result


def export_revision(revision: str, into: Path) -> Path:
    """blend/ and sql/ of a git revision, unpacked under `into` (read-only use of the repo)."""
    import io
    import tarfile

    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", revision, "blend", "sql"],
        check=True,
        capture_output=True,
    ).stdout
    target = into / f"code-{revision}"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def bench(rows: int, before: str | None, warmup: bool, work: Path) -> None:
    from blend.demo.model import ensure_tiny_model

    model = ensure_tiny_model(work / "models")
    folder = work / f"rows-{rows}"
    folder.mkdir(exist_ok=True)
    flags = {"store": str(folder / "store"), "model": str(model), "rows": str(rows)}
    flags["plan_warmup"] = "0.01" if warmup else "0"
    if (folder / "store").exists():  # planned by an earlier run in this --work folder
        from blend.store.database import Store

        flags["plan_id"] = latest_plan_id(Store.open(folder / "store"), DATASET)
        print(f"\n{rows:,} requests (the store and plan of {folder})")
    else:
        setup = run_child("setup", flags)
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in setup["seconds"].items())
        print(f"\n{rows:,} requests (setup: {steps}; peak RSS {setup['peak_rss_gb']:.2f} GB)")
        flags["plan_id"] = setup["plan_id"]
    codes: list[tuple[str, Path | None]] = [("current", None)]
    if before is not None:
        codes.insert(0, (f"@{before}", export_revision(before, work)))
    for label, code in codes:
        r = run_child("execute", flags, code)
        print(
            f"  execute {label:<10} {r['seconds']:7.1f} s  {r['requests_per_s']:9,.0f} requests/s"
            f"  (start {r.get('start_s', 0.0):.1f} s, then {r.get('loop_requests_per_s', 0.0):,.0f}"
            f" requests/s, {r.get('loop_requests_per_cpu_s', 0.0):,.0f} per CPU-second)"
            f"  peak RSS {r['peak_rss_gb']:5.2f} GB  engine busy {r['engine_busy_s']:5.1f} s  "
            f"rows {r['rows']:,} ({r['n_errors']} errors, {r['status']})  "
            f"load {r['load'][0]:.1f}-{r['load'][1]:.1f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--before", help="also execute with this git revision's executor")
    parser.add_argument("--warmup", action="store_true", help="plan a 1%% warm-up (re-plan)")
    parser.add_argument(
        "--work", type=Path, help="work folder, kept for the next run (default: a temporary one)"
    )
    parser.add_argument("--child", choices=("setup", "execute"), help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--plan_id", help=argparse.SUPPRESS)
    parser.add_argument("--plan_warmup", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if str(REPO) not in sys.path:
            sys.path.append(str(REPO))  # after PYTHONPATH: --before's code comes first
        args.rows = args.rows[0]
        result = (child_setup if args.child == "setup" else child_execute)(args)
        print(json.dumps(result), flush=True)
        return
    sys.path.insert(0, str(REPO))
    if args.work is not None:  # kept: a second run reuses its stores and plans
        args.work.mkdir(parents=True, exist_ok=True)
        for rows in args.rows:
            bench(rows, args.before, args.warmup, args.work)
        return
    with tempfile.TemporaryDirectory(prefix="blend-executor-") as tmp:
        for rows in args.rows:
            bench(rows, args.before, args.warmup, Path(tmp))


if __name__ == "__main__":
    main()
