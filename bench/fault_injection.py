"""Fault injection: SIGKILL the execute stage at random points, resume, count lost/duplicated.

The execute stage runs for real (vLLM CPU engine, the tiny local model) in a child process,
on a BlendServe plan (warm-up sample, re-plan after it, online dual-scan admission). The
parent kills it at chosen points: while it starts, during the warm-up, right after the
re-plan is stored, at random rows (also while parts are written); it re-runs it with the
same run id until it completes, and checks in DuckDB that the run's Parquet parts hold
exactly one row per plan item and that the run re-planned exactly once. With --plain-rerun
the child is re-run without a run id (`resume=True`, what `blend execute --resume` and a plain
`blend run` do): the killed run, left `running`, must be found dead and continued, so the plan
ends with one run, not one per kill.

    python bench/fault_injection.py --kills 10 --seeds 1 2       # prints lost/duplicated
    python bench/fault_injection.py --kills 5 --plain-rerun      # re-run without the run id
    python bench/fault_injection.py --kills 5 --alternate-rerun  # with it, then without, ...
    python bench/fault_injection.py child --store S --plan-id P --run-id R --model M
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from blend.store.database import Store, fetch_dicts  # noqa: E402

CHILD_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class Outcome:
    n_planned: int
    n_rows: int
    lost: int  # plan items without a row
    duplicated: int  # rows beyond the first for a request
    n_kills: int
    n_executions: int  # children started (kills + the completing one)
    run_status: str
    n_attempts: int  # executions the runs table counted
    leftover_temporary: int  # .tmp-* files left in the run folder
    wall_s: float
    kinds: tuple[str, ...]  # where each kill landed: time, warmup, replan, rows
    n_revisions: int  # re-planned orders stored for the run (exactly one)
    n_runs: int = 1  # runs of the plan in `runs` (one: every re-run continued it)


def write_prompts(path: Path, n_requests: int, seed: int) -> Path:
    """Prompts with shared prefixes, mixed lengths and sampling (greedy and seeded)."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "lambda", "class", "yield", "import", "await"]
    prefixes = [" ".join(rng.choices(words, k=rng.randint(20, 160))) for _ in range(4)]
    with path.open("w") as f:
        for i in range(n_requests):
            record: dict = {
                "custom_id": f"req-{i:05d}",
                "prompt": f"{rng.choice(prefixes)} question {i}: "
                + " ".join(rng.choices(words, k=rng.randint(1, 40))),
                "max_tokens": rng.randint(4, 24),
            }
            if i % 2:
                record |= {"temperature": 0.8, "seed": i}
            f.write(json.dumps(record) + "\n")
    return path


def prepare(store_dir: Path, model_dir: Path, n_requests: int, seed: int) -> str:
    """Ingest, profile and plan a generated dataset; returns the plan id."""
    from blend.ingest import ingest_file
    from blend.plan.stage import PlanOptions, plan_dataset
    from blend.profile.stage import profile_dataset

    store = Store.open(store_dir)
    source = write_prompts(store.root / "prompts.jsonl", n_requests, seed)
    ingest_file(store, source, "faults")
    profile_dataset(store, "faults", model_dir)
    options = PlanOptions(planner="blendserve", batch_size=32, warmup_fraction=0.05, seed=seed)
    return plan_dataset(store, "faults", options, model_dir=model_dir).plan_id


def child_main(args: argparse.Namespace) -> int:
    """Execute (or resume) the run; prints `started` and `progress DONE` lines."""
    from blend.engines.base import EngineConfig
    from blend.execute.stage import ExecuteOptions, execute_plan

    print("started", flush=True)

    def progress(done: int, total: int, output_tokens: int) -> None:
        print(f"progress {done}", flush=True)

    config = EngineConfig(
        model_dir=Path(args.model), max_num_seqs=args.max_num_seqs, kv_cache_gib=1
    )
    options = ExecuteOptions(
        flush_rows=args.flush_rows,
        flush_seconds=0.5,
        progress_interval_s=0.0,
        plan_budgets=False,  # --max-num-seqs keeps several requests in flight on two cores
        on_replan=lambda report: print("replanned", flush=True),
    )
    latest = args.run_id == LATEST  # a plain re-run: continue the latest unfinished run
    report = execute_plan(
        Store.open(args.store),
        args.plan_id,
        config,
        run_id=None if latest else args.run_id,
        options=dataclasses.replace(options, resume=latest),
        progress=progress,
    )
    print(f"done {report.status} {report.n_requests}", flush=True)
    return 0 if report.status == "completed" else 1


def _child_command(store: Path, plan_id: str, run_id: str, model: Path) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "child",
        "--store",
        str(store),
        "--plan-id",
        plan_id,
        "--run-id",
        run_id,
        "--model",
        str(model),
    ]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    env.setdefault("VLLM_CONFIGURE_LOGGING", "0")
    return env


def run_once(command: list[str], kill_at: tuple[str, float] | None, rng: random.Random) -> bool:
    """Run one child; kill it at `kill_at`: ("time", s after start), ("rows", n done) or
    ("replan", 0) (as soon as the re-plan is stored).

    Returns whether it was killed (False: it exited on its own, which must be success).
    """
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_child_env(),
        cwd=ROOT,
    )
    assert proc.stdout is not None
    deadline = threading.Timer(CHILD_TIMEOUT_S, proc.kill)
    deadline.start()
    killed = False
    try:
        for line in proc.stdout:
            if line.startswith("started"):
                if kill_at is not None and kill_at[0] == "time":
                    threading.Timer(kill_at[1], _kill, (proc,)).start()
            elif line.startswith("replanned") and kill_at is not None and kill_at[0] == "replan":
                _kill(proc)
            elif (
                line.startswith("progress")
                and kill_at is not None
                and kill_at[0] == "rows"
                and int(line.split()[1]) >= kill_at[1]
            ):
                time.sleep(rng.uniform(0.0, 0.05))  # land anywhere, part writes included
                _kill(proc)
        code = proc.wait()
        killed = code == -signal.SIGKILL
        if not killed and code != 0:
            raise RuntimeError(f"child exited with {code}: {' '.join(command)}")
    finally:
        deadline.cancel()
    return killed


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)


def rows_done(store: Store, dataset: str, run_id: str) -> int:
    """Rows in the run's finished parts (what a resume would skip)."""
    from blend.store.results import rows_in, run_dir

    return rows_in(sorted(run_dir(store.results_dir, dataset, run_id).glob("part-*.parquet")))


KILL_KINDS = ("warmup", "replan", "rows", "time")
LATEST = "latest"  # the child's --run-id for a plain re-run (no run id, resume=True)


def run_with_kills(
    store_dir: Path,
    plan_id: str,
    model_dir: Path,
    n_kills: int,
    seed: int,
    kinds: tuple[str, ...] = KILL_KINDS,
    plain_rerun: bool | Literal["alternate"] = False,
) -> Outcome:
    """Kill the run `n_kills` times, cycling through `kinds` of kill point, then let it
    complete; count rows. A kind that no longer applies (the warm-up or the re-plan is past)
    becomes a random row. plain_rerun: every re-run without the run id, or ("alternate") the
    executions take turns, with the run id first."""
    rng = random.Random(seed)
    store = Store.open(store_dir)
    run_id = f"run-faults-{seed}"
    by_id = _child_command(store.root, plan_id, run_id, model_dir)
    plain = _child_command(store.root, plan_id, LATEST, model_dir)

    def command_for(execution: int) -> list[str]:
        if plain_rerun == "alternate":
            return plain if execution % 2 else by_id
        return plain if plain_rerun else by_id

    with store.connect() as con:
        plan = fetch_dicts(
            con, "SELECT n_requests, n_warmup FROM plans WHERE plan_id = $p", {"p": plan_id}
        )[0]
    n_planned, n_warmup = plan["n_requests"], plan["n_warmup"]
    started = time.perf_counter()
    kills = executions = 0
    landed: list[str] = []
    while kills < n_kills:
        run_id = (_only_run(store, plan_id) or run_id) if plain_rerun else run_id
        done_now = rows_done(store, "faults", run_id)
        kind = kinds[kills % len(kinds)]
        if kind == "warmup" and done_now + 1 >= n_warmup:
            kind = "rows"
        if kind == "replan" and _replanned(store, run_id):
            kind = "rows"
        if kind == "rows" and n_planned - done_now <= 1:
            kind = "time"
        kill_at: tuple[str, float] = {
            "time": ("time", rng.uniform(0.0, 4.0)),  # imports, engine start
            "warmup": ("rows", done_now + rng.randrange(0, max(1, n_warmup - done_now - 1))),
            "replan": ("replan", 0.0),
            "rows": ("rows", done_now + rng.randrange(0, max(1, n_planned - done_now))),
        }[kind]
        executions += 1
        if run_once(command_for(executions - 1), kill_at, rng):
            kills += 1
            landed.append(kind)
        else:
            break  # it completed before the kill point
    if kills == n_kills or executions == 0:
        executions += 1
        if run_once(command_for(executions - 1), None, rng):
            raise RuntimeError("the completing run was killed")
    if plain_rerun:
        run_id = _only_run(store, plan_id) or run_id
    return check(store, plan_id, run_id, n_planned, kills, executions, started, tuple(landed))


def _only_run(store: Store, plan_id: str) -> str | None:
    """The latest run of the plan (a plain re-run continues it: there should be one)."""
    with store.connect(views=False) as con:
        rows = fetch_dicts(
            con,
            "SELECT run_id FROM runs WHERE plan_id = $p ORDER BY started_at DESC",
            {"p": plan_id},
        )
    return rows[0]["run_id"] if rows else None


def _replanned(store: Store, run_id: str) -> bool:
    with store.connect(views=False) as con:
        rows = fetch_dicts(con, "SELECT replan_json FROM runs WHERE run_id = $r", {"r": run_id})
    return bool(rows) and rows[0]["replan_json"] is not None


def check(
    store: Store,
    plan_id: str,
    run_id: str,
    n_planned: int,
    kills: int,
    executions: int,
    started: float,
    kinds: tuple[str, ...] = (),
) -> Outcome:
    from blend.store.results import run_dir

    directory = run_dir(store.results_dir, "faults", run_id)
    glob = str(directory / "part-*.parquet")
    with store.connect() as con:
        counts = fetch_dicts(
            con,
            "WITH r AS (SELECT request_id FROM read_parquet($glob)), "
            "items AS (SELECT request_id FROM plan_items WHERE plan_id = $plan) "
            "SELECT (SELECT count(*) FROM r) AS n_rows, "
            "(SELECT count(*) FROM items ANTI JOIN r USING (request_id)) AS lost, "
            "(SELECT count(*) - count(DISTINCT request_id) FROM r) AS duplicated",
            {"glob": glob, "plan": plan_id},
        )[0]
        run = fetch_dicts(
            con, "SELECT status, n_attempts FROM runs WHERE run_id = $r", {"r": run_id}
        )[0]
        n_runs = fetch_dicts(
            con, "SELECT count(*) AS n FROM runs WHERE plan_id = $p", {"p": plan_id}
        )[0]["n"]
        revisions = fetch_dicts(
            con,
            "SELECT count(DISTINCT run_id) AS n, count(*) AS items "
            "FROM run_orders WHERE run_id = $r",
            {"r": run_id},
        )[0]
    return Outcome(
        n_planned=n_planned,
        n_rows=counts["n_rows"],
        lost=counts["lost"],
        duplicated=counts["duplicated"],
        n_kills=kills,
        n_executions=executions,
        run_status=run["status"],
        n_attempts=run["n_attempts"],
        leftover_temporary=len(list(directory.glob(".tmp-*"))),
        wall_s=time.perf_counter() - started,
        kinds=kinds,
        n_revisions=revisions["n"],
        n_runs=n_runs,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        parser = argparse.ArgumentParser(prog="fault_injection.py child")
        parser.add_argument("--store", required=True)
        parser.add_argument("--plan-id", required=True)
        parser.add_argument("--run-id", required=True)
        parser.add_argument("--model", required=True)
        parser.add_argument("--flush-rows", type=int, default=16)
        parser.add_argument("--max-num-seqs", type=int, default=8)
        return child_main(parser.parse_args(argv[1:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="kill points per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--store", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument(
        "--plain-rerun",
        action="store_true",
        help="re-run without the run id (resume the latest unfinished run of the plan)",
    )
    parser.add_argument(
        "--alternate-rerun",
        action="store_true",
        help="re-runs take turns: with the run id, then without it",
    )
    args = parser.parse_args(argv)
    from blend.demo.model import ensure_tiny_model

    work = args.store or Path(tempfile.mkdtemp(prefix="blend-faults-"))
    model = ensure_tiny_model(work / "models")
    total_lost = total_duplicated = 0
    for seed in args.seeds:
        store_dir = work / f"store-{seed}"
        plan_id = prepare(store_dir, model, args.requests, seed)
        outcome = run_with_kills(
            store_dir,
            plan_id,
            model,
            args.kills,
            seed,
            plain_rerun="alternate" if args.alternate_rerun else args.plain_rerun,
        )
        total_lost += outcome.lost
        total_duplicated += outcome.duplicated
        print(
            f"seed {seed}: {outcome.n_kills} kills, {outcome.n_executions} executions, "
            f"{outcome.n_planned} planned, {outcome.n_rows} rows: lost {outcome.lost}, "
            f"duplicated {outcome.duplicated}; run {outcome.run_status} after "
            f"{outcome.n_attempts} attempts; {outcome.leftover_temporary} temporary files; "
            f"kills at {', '.join(outcome.kinds)}; re-planned {outcome.n_revisions} time(s); "
            f"{outcome.n_runs} run(s) of the plan; "
            f"{outcome.wall_s:.0f} s",
            flush=True,
        )
    print(f"total: lost {total_lost}, duplicated {total_duplicated}")
    return 0 if total_lost == total_duplicated == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
