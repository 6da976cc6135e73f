"""Child processes for the fault tests (a support module, not a test): what runs in the
process that the tests run beside each other, or kill.

    python -m tests.support.fault_child pipeline --store S --input F --dataset D --model M
    python -m tests.support.fault_child profile --store S --dataset D --model M
    python -m tests.support.fault_child part-write --store S --plan-id P --run-id R --model M
    python -m tests.support.fault_child hold-writer --store S
    python -m tests.support.fault_child hold-duckdb --db FILE

Each prints `started` first and flushes every line, so the parent can act on them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from blend.engines.base import EngineConfig
from blend.execute.stage import ExecuteOptions, execute_plan
from blend.store.database import Store
from tests.support.fake_engine import FakeEngine

T = TypeVar("T")


def say(line: str) -> None:
    print(line, flush=True)


def fake_engine_stages(step_s: float) -> Callable[..., Any]:
    """A pipeline `run_stage` hook: the fake engine (one request per `step_s` s) executes,
    with the profiled context length."""
    max_model_len: list[int] = []

    def run_stage(name: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if fn is execute_plan:
            limit = max_model_len[0]
            kwargs["engine_factory"] = lambda c: FakeEngine(
                c, max_model_len=limit, idle_steps=1, idle_step_s=step_s
            )
        result = fn(*args, **kwargs)
        if name == "profile":
            max_model_len.append(result.max_model_len)  # type: ignore[attr-defined]
        return result

    return run_stage


def pipeline(args: argparse.Namespace) -> None:
    from blend.pipeline.chain import PipelineOptions, run_pipeline
    from blend.plan.stage import PlanOptions

    say("started")
    options = PipelineOptions(
        input_path=Path(args.input),
        dataset=args.dataset,
        plan=PlanOptions(planner="dfs", warmup_fraction=0.0),
        execute=ExecuteOptions(flush_rows=args.flush_rows, progress_interval_s=0.0),
    )
    report = run_pipeline(
        Store.open(args.store),
        EngineConfig(model_dir=Path(args.model)),
        options,
        progress=lambda done, total, tokens: say(f"progress {done}"),
        run_stage=fake_engine_stages(args.step_s),
    )
    run = report.run
    say(f"done {run.run_id if run else '-'} {run.n_requests if run else 0}")


def profile(args: argparse.Namespace) -> None:
    from blend.profile.stage import profile_dataset

    say("started")
    profile_dataset(
        Store.open(args.store),
        args.dataset,
        Path(args.model),
        batch_size=4,
        progress=lambda *a: say("progress"),
    )
    say("done")


def part_write(args: argparse.Namespace) -> None:
    """Execute with the fake engine; the second part write and every later one pause after
    the temporary file is complete and before the rename (`writing N` is printed then), for
    the parent to kill: the first part is finished, the second is not."""
    import blend.store.results as results

    real_write_table = results.pq.write_table
    writes: list[Any] = []

    def slow_write_table(table: Any, where: Any, **kwargs: Any) -> None:
        real_write_table(table, where, **kwargs)
        writes.append(where)
        say(f"writing {len(writes)}")
        if len(writes) >= 2:
            time.sleep(args.pause_s)

    results.pq.write_table = slow_write_table  # type: ignore[assignment]
    say("started")
    report = execute_plan(
        Store.open(args.store),
        args.plan_id,
        EngineConfig(model_dir=Path(args.model)),
        run_id=args.run_id,
        options=ExecuteOptions(flush_rows=2),
        engine_factory=lambda c: FakeEngine(c, max_model_len=args.max_model_len),
    )
    say(f"done {report.run_id} {report.n_requests}")


def hold_writer(args: argparse.Namespace) -> None:
    with Store.open(args.store).connect(views=False):
        say("held")
        time.sleep(args.hold_s)


def hold_duckdb(args: argparse.Namespace) -> None:
    import duckdb

    con = duckdb.connect(args.db)  # DuckDB's own lock, outside blend's
    say("held")
    time.sleep(args.hold_s)
    con.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="tests.support.fault_child")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pipeline")
    p.add_argument("--store", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--step-s", type=float, default=0.0)
    p.add_argument("--flush-rows", type=int, default=4)
    p = sub.add_parser("profile")
    p.add_argument("--store", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True)
    p = sub.add_parser("part-write")
    p.add_argument("--store", required=True)
    p.add_argument("--plan-id", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--max-model-len", type=int, default=64)
    p.add_argument("--pause-s", type=float, default=60.0)
    p = sub.add_parser("hold-writer")
    p.add_argument("--store", required=True)
    p.add_argument("--hold-s", type=float, default=60.0)
    p = sub.add_parser("hold-duckdb")
    p.add_argument("--db", required=True)
    p.add_argument("--hold-s", type=float, default=60.0)
    args = parser.parse_args(argv)
    commands = {
        "pipeline": pipeline,
        "profile": profile,
        "part-write": part_write,
        "hold-writer": hold_writer,
        "hold-duckdb": hold_duckdb,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main(sys.argv[1:])
