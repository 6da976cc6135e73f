"""Scale benchmark: synthetic prompts through the stages, wall time and peak RSS per stage.

    python bench/scale.py --rows 1000000                       # both shapes, every stage
    python bench/scale.py --rows 1000000 3000000 --shapes fewshot --tokenizer bytes
    python bench/scale.py --rows 1000000 --stages ingest profile --before da38914
    python bench/scale.py --rows 10000000 --kill-after-s 60    # kill each stage, run it again

For each shape and row count a JSONL file is written (streamed: bench/workloads/
scale_prompts.py), then each stage runs in a fresh child process on one store, one after the
other, so that its seconds and peak RSS are its own (peak RSS from os.wait4 of the child;
seconds exclude the child's imports). Stages: ingest (`ingest_file`), profile
(`profile_dataset` with the demo tokenizer, or --tokenizer bytes), plan (`plan_dataset`, dfs),
execute (`execute_plan` with the null engine: the executor's own cost), export (`export_results`,
openai-batch). After each stage a check child counts what the store holds (every prompt once:
no row lost, none duplicated). With --kill-after-s S, each stage is first killed (SIGKILL)
S seconds after it starts, then run again to the end, and the check must still hold: what a
nightly job that dies in a stage and is started again gets. With --before REV, the profile
stage also runs with the code of git revision REV (its blend/ and sql/ exported by
`git archive` into the work folder and put first on the child's PYTHONPATH), before the
current code, on the same store: the two side by side under the same load. Each line carries
the load average (1 min) at the stage's start and end: the machine is shared, so compare
figures of one run only.

To add a stage: a function `stage_<name>(args) -> dict` run in the child, and its name in
STAGES (in pipeline order).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STAGES = ("ingest", "profile", "plan", "execute", "export")
DATASET = "scale"


def stage_ingest(args: argparse.Namespace) -> dict[str, Any]:
    from blend.ingest import ingest_file
    from blend.store.database import Store

    started = time.perf_counter()
    report = ingest_file(Store.open(args.store), Path(args.input), DATASET)
    return {"seconds": time.perf_counter() - started, "rows": report.n_rows}


def stage_profile(args: argparse.Namespace) -> dict[str, Any]:
    import resource

    import blend
    from blend.profile import stage
    from blend.profile.token_batches import TokenizeOptions
    from blend.store.database import Store

    marks = _mark_phases(stage, ("store_prompt_tokens", "_measure", "_request_classes"))
    tokenize = None  # the stage's default: a process per core for large snapshots
    if args.tokenizer == "bytes":
        stage.encode_batch = _byte_chunk_ids  # type: ignore[attr-defined]
        tokenize = TokenizeOptions(workers=1)  # a few us a prompt: a pool would only pickle
    started, cpu = time.perf_counter(), time.process_time()
    report = stage.profile_dataset(
        Store.open(args.store), DATASET, Path(args.model), tokenize=tokenize
    )
    seconds = time.perf_counter() - started
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        # the largest tokenizer worker's peak RSS (GB; each worker holds its own tokenizer),
        # and their CPU seconds (wait4 of this process sees neither)
        "worker_peak_rss_gb": workers.ru_maxrss * 1024 / 1e9,
        "worker_cpu_s": workers.ru_utime + workers.ru_stime,
        "peak_after_gb": marks,  # VmHWM when each phase returned: which one set the peak
        "seconds": seconds,
        "cpu_s": time.process_time() - cpu,  # all threads: > seconds when cores work at once
        "rows": report.n_prompts,
        "tokens": report.input_tokens,
        "tokenize_s": report.tokenize_s,
        "sql_s": report.sql_s,
        "rest_s": seconds - report.tokenize_s - report.sql_s,  # request classes, setup
        "sharing_ratio": report.sharing_ratio,
        "unique_prefix_tokens": report.unique_prefix_tokens,
        "n_prefix_groups": report.n_prefix_groups,
        "top_groups": [
            [g.n_prompts, g.shared_prefix_tokens, g.first_request_id] for g in report.top_groups
        ],
        "code": str(Path(blend.__file__).parent.parent),
    }


def stage_plan(args: argparse.Namespace) -> dict[str, Any]:
    import blend
    from blend.plan import stage
    from blend.store.database import Store

    phases = ("read_sorted_requests", "estimate_outputs", "_order", "_items_table", "_store_plan")
    marks = _mark_phases(stage, phases)
    started, cpu = time.perf_counter(), time.process_time()
    report = stage.plan_dataset(
        Store.open(args.store), DATASET, stage.PlanOptions(), model_dir=Path(args.model)
    )
    return {
        "seconds": time.perf_counter() - started,
        # all threads' (DuckDB's too): other jobs on a shared machine change seconds, not this
        "cpu_s": time.process_time() - cpu,
        "rows": report.n_requests,
        "plan_id": report.plan_id,
        "peak_after_gb": marks,  # VmHWM when each phase returned: which one set the peak
        "code": str(Path(blend.__file__).parent.parent),
    }


def stage_execute(args: argparse.Namespace) -> dict[str, Any]:
    """The plan through the executor with the null engine (answers at once): its own cost.
    Resumes the plan's latest unfinished run, so a run after a kill finishes that one."""
    from bench.executor_overhead import stage_execute_null
    from blend.store.database import Store

    return stage_execute_null(Store.open(args.store), DATASET, Path(args.model))


def stage_export(args: argparse.Namespace) -> dict[str, Any]:
    from blend.store.database import Store
    from blend.store.export import ExportFormat, export_results

    out = Path(args.store).parent / "answers.jsonl"
    started = time.perf_counter()
    report = export_results(Store.open(args.store), DATASET, out, ExportFormat.OPENAI_BATCH)
    seconds = time.perf_counter() - started
    out.unlink()
    return {"seconds": seconds, "rows": report.n_rows}


# What the store must hold after each stage: every prompt once, none lost or duplicated.
CHECKS = {
    "ingest": "SELECT count(*) AS n, count(DISTINCT request_id) AS distinct_n, "
    "count(DISTINCT snapshot) AS snapshots FROM prompts WHERE dataset = $d",
    "profile": "SELECT count(*) AS n, count(DISTINCT request_id) AS distinct_n "
    "FROM prompt_tokens WHERE dataset = $d",
    "plan": "SELECT count(*) AS n, count(DISTINCT request_id) AS distinct_n FROM plan_items "
    "WHERE plan_id = (SELECT plan_id FROM plans WHERE dataset = $d "
    "ORDER BY created_at DESC LIMIT 1)",
    # the dataset's newest run (a killed run goes on under its own id): a plan run to the
    # end again answers every prompt once more, in a run of its own, as asked
    "execute": "SELECT count(*) AS n, count(DISTINCT request_id) AS distinct_n FROM results "
    "WHERE run_id = (SELECT run_id FROM runs WHERE dataset = $d "
    "ORDER BY started_at DESC LIMIT 1)",
}


def stage_check(args: argparse.Namespace) -> dict[str, Any]:
    """Counts after stage args.after (export: the file is checked in its own stage)."""
    from blend.store.database import Store, fetch_dicts

    query = CHECKS.get(args.after)
    if query is None:
        return {}
    with Store.open(args.store).connect() as con:
        [row] = fetch_dicts(con, query, {"d": DATASET})
    return dict(row)


def _mark_phases(module: Any, names: tuple[str, ...]) -> dict[str, float]:
    """Wrap module functions to note the process's peak RSS (GB) when each returns."""
    marks: dict[str, float] = {}

    def wrapped(name: str, function: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = function(*args, **kwargs)
            marks[name] = proc_status_gb()
            return result

        return call

    for name in names:
        setattr(module, name, wrapped(name, getattr(module, name)))
    return marks


def proc_status_gb(field: str = "VmHWM") -> float:
    """A memory field of this process's /proc status in GB (VmHWM: the peak RSS since start
    or the last reset through /proc/self/clear_refs; VmRSS: now); 0.0 where absent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024 / 1e9  # the kernel counts kB (KiB)
    return 0.0


def _byte_chunk_ids(
    tokenizer: Any, prompts: list[str | None], messages_json: list[str | None], **_: Any
) -> list[list[int]]:
    """A stand-in for the BPE (--tokenizer bytes): the UTF-8 text read as 32-bit words (their
    top 31 bits: ids are >= 0), about one id per 4 bytes. Prompts sharing text from their start
    share ids, as with a real tokenizer; it costs a few us a prompt, so every other part of the
    stage can run at 10M rows."""
    import numpy as np

    ids = []
    for prompt, messages in zip(prompts, messages_json, strict=True):
        data = (prompt if messages is None else messages).encode()
        ids.append((np.frombuffer(data[: len(data) // 4 * 4], "<u4") >> 1).tolist())
    return ids


def run_child(
    stage: str,
    args: dict[str, str],
    max_rss_gb: float,
    code: Path | None = None,
    kill_after_s: float | None = None,
) -> dict[str, Any]:
    """Run one stage in a fresh process; its result, peak RSS (GB) and the load average.

    A child whose RSS passes max_rss_gb is killed (the machine is shared): the result then
    says so, with the seconds it ran. With kill_after_s, the child is killed (SIGKILL) that
    many seconds after it starts, as a crash would: the result says "crashed" (or, when it
    finished first, is its normal result).
    """
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    flags = [item for key, value in args.items() for item in (f"--{key}", value)]
    load_before, started = os.getloadavg()[0], time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", stage, *flags], stdout=subprocess.PIPE, env=env
    )
    killed = threading.Event()
    reaped = threading.Event()
    watch_args = (child, max_rss_gb, killed, reaped)
    threading.Thread(target=_watch, args=watch_args, daemon=True).start()
    crash = None
    if kill_after_s is not None:
        crash = threading.Timer(kill_after_s, child.kill)
        crash.start()
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    reaped.set()
    child.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss * 1024 / 1e9  # ru_maxrss is KiB on Linux
    load = (load_before, os.getloadavg()[0])
    if crash is not None:
        crash.cancel()
        if child.returncode == -9 and not killed.is_set():
            seconds = time.perf_counter() - started
            return {"crashed": True, "seconds": seconds, "peak_rss_gb": peak, "load": load}
    if killed.is_set():
        return {
            "killed": True,
            "seconds": time.perf_counter() - started,
            "peak_rss_gb": peak,
            "load": load,
        }
    if child.returncode != 0:
        raise SystemExit(f"stage {stage} failed (exit {child.returncode})")
    result: dict[str, Any] = json.loads(output.decode().strip().splitlines()[-1])
    result.update(peak_rss_gb=peak, load=load)
    return result


def _watch(
    child: subprocess.Popen[bytes],
    max_rss_gb: float,
    killed: threading.Event,
    reaped: threading.Event,
) -> None:
    """Kill the child when its resident memory passes max_rss_gb (polled twice a second).

    Never polls the child (Popen.poll reaps it, and run_child's wait4 must get its rusage):
    it stops when run_child has reaped it (a zombie's status has no VmRSS: 0).
    """
    status = Path(f"/proc/{child.pid}/status")
    while not reaped.is_set():
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            return
        rss_gb = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024 / 1e9
        if rss_gb > max_rss_gb:
            killed.set()
            child.kill()
            return
        time.sleep(0.5)


def bench(
    shape: str,
    rows: int,
    stages: list[str],
    before: str | None,
    max_rss_gb: float,
    tokenizer: str,
    kill_after_s: float | None,
    work: Path,
) -> None:
    from bench.workloads.scale_prompts import write_prompts
    from blend.demo.model import ensure_tiny_model

    model = ensure_tiny_model(work / "models")
    folder = work / f"{shape}-{rows}"
    folder.mkdir(exist_ok=True)
    path = folder / "prompts.jsonl"
    if "ingest" in stages:
        started = time.perf_counter()
        write_prompts(path, shape, rows)
        print(
            f"\n{shape}, {rows:,} rows: {path.stat().st_size / 1e6:,.0f} MB written in "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
    else:  # the later stages on the store a kept --work folder holds
        print(f"\n{shape}, {rows:,} rows: the store in {folder}", flush=True)
    args = {
        "store": str(folder / "store"),
        "input": str(path),
        "model": str(model),
        "tokenizer": tokenizer,
    }
    for stage in stages:
        if stage == "profile" and before is not None:
            from bench.executor_overhead import export_revision

            code = export_revision(before, work)
            report(f"profile @{before}", run_child("profile", args, max_rss_gb, code))
        if kill_after_s is not None:
            first = run_child(stage, args, max_rss_gb, None, kill_after_s)
            report(stage if first.get("crashed") else f"{stage} (before kill)", first)
        result = run_child(stage, args, max_rss_gb)
        report(stage, result)
        if result.get("killed"):
            break
        check = run_child("check", {**args, "after": stage}, max_rss_gb)
        if stage == "export":
            check = {"n": result["rows"], "distinct_n": result["rows"]}
        lost, duplicated = (
            rows - check.get("distinct_n", rows),
            check.get("n", 0) - check.get("distinct_n", 0),
        )
        print(f"  {'':<18} check: {lost:,} lost, {duplicated:,} duplicated", flush=True)
    path.unlink(missing_ok=True)


def report(label: str, r: dict[str, Any]) -> None:
    if r.get("crashed"):
        print(
            f"  {label:<18} crashed on purpose after {r['seconds']:.0f} s at peak RSS "
            f"{r['peak_rss_gb']:.2f} GB",
            flush=True,
        )
        return
    if r.get("killed"):
        print(
            f"  {label:<18} killed after {r['seconds']:.0f} s at peak RSS "
            f"{r['peak_rss_gb']:.2f} GB (over --max-rss-gb)  load "
            f"{r['load'][0]:.1f}-{r['load'][1]:.1f}",
            flush=True,
        )
        return
    line = (
        f"  {label:<18} {r['seconds']:8.1f} s  peak RSS {r['peak_rss_gb']:5.2f} GB  "
        f"cpu {r.get('cpu_s', 0):6.0f} s  "
        f"load {r['load'][0]:.1f}-{r['load'][1]:.1f}"
    )
    if "requests_per_s" in r:
        line += (
            f"  [{r['requests_per_s']:,.0f} requests/s; after the start "
            f"({r.get('start_s', 0.0):.0f} s) {r.get('loop_requests_per_s', 0.0):,.0f}/s, "
            f"{r.get('loop_requests_per_cpu_s', 0.0):,.0f} per CPU-second; run {r.get('status')}]"
        )
    if "tokens" in r:
        line += (
            f"  [tokenize {r['tokenize_s']:.0f} s, sql {r['sql_s']:.0f} s, rest "
            f"{r['rest_s']:.0f} s; {r['tokens']:,} tokens, sharing {r['sharing_ratio']:.4f}, "
            f"{r['unique_prefix_tokens']:,} trie nodes, {r['n_prefix_groups']} groups, "
            f"top {r['top_groups'][:1]}; tokenizer workers: peak RSS "
            f"{r['worker_peak_rss_gb']:.2f} GB each, cpu {r['worker_cpu_s']:.0f} s; "
            "peak RSS after each phase "
            f"{ {k: round(v, 2) for k, v in r['peak_after_gb'].items()} }]"
        )
    elif "peak_after_gb" in r:
        marks = {k: round(v, 2) for k, v in r["peak_after_gb"].items()}
        line += f"  [peak RSS after each phase {marks}]"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--shapes", nargs="+", default=["fewshot", "unique"])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument(
        "--kill-after-s",
        type=float,
        help="kill each stage this many seconds after it starts, then run it again",
    )
    parser.add_argument("--before", help="also profile with this git revision's code")
    parser.add_argument(
        "--work",
        type=Path,
        help="work folder, kept: a later run with --stages past ingest goes on with its "
        "stores (default: a temporary one)",
    )
    parser.add_argument(
        "--max-rss-gb", type=float, default=10.0, help="kill a stage past this RSS (GB)"
    )
    parser.add_argument(
        "--tokenizer",
        choices=("bpe", "bytes"),
        default="bpe",
        help="bpe: the demo model's tokenizer; bytes: 32-bit words of the text, a fast "
        "stand-in that leaves the rest of the profile to measure at 10M rows",
    )
    parser.add_argument("--child", choices=(*STAGES, "check"), help=argparse.SUPPRESS)
    parser.add_argument("--after", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # bench.workloads and bench.executor_overhead, as a script; after PYTHONPATH's folders, so
    # that a --before child imports that revision's blend (first, it imported this checkout's)
    sys.path.append(str(REPO))
    if args.child:
        print(json.dumps(globals()[f"stage_{args.child}"](args)), flush=True)
        return
    with contextlib.ExitStack() as stack:
        if args.work is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="blend-scale-"))
        else:
            args.work.mkdir(parents=True, exist_ok=True)
            tmp = str(args.work)
        for rows in args.rows:
            for shape in args.shapes:
                bench(
                    shape,
                    rows,
                    [stage for stage in STAGES if stage in args.stages],
                    args.before,
                    args.max_rss_gb,
                    args.tokenizer,
                    args.kill_after_s,
                    Path(tmp),
                )


if __name__ == "__main__":
    main()
