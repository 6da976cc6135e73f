"""Benchmark ingest_file against DuckDB's own JSON reader on the same synthetic JSONL file.

    python bench/ingest_bench.py --rows 500000            # blend (vectorised) vs DuckDB
    python bench/ingest_bench.py --rows 500000 --exact    # also the per-record path
    python bench/ingest_bench.py --rows 10000000          # the scale run (~2.4 GB file)

For each size one file is written (streaming) into a temporary folder, then each contender
runs in a fresh child process on it, one after the other, so that seconds and peak RSS are its
own (peak RSS from os.wait4 on the child). Contenders:

  duckdb   CREATE TABLE AS SELECT * FROM read_json(file) into a fresh database file: DuckDB's
           reader and writer, no validation (the reference).
  blend    ingest_file(store, file): validation, ids, duplicates, rejects, transactional publish.
  exact    ingest_file(..., vectorised=False): every record through the per-record validator.
  before   blend (vectorised) from another checkout (--before DIR, e.g. a `git worktree add DIR
           <rev>` of the code before a change), run side by side with the others.

Prints one line per run and the blend / duckdb ratios (--repeat N: N rounds, in which the
contenders take turns, and the median ratio: on a shared machine single runs vary by ~20%).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

_VOCABULARY = (
    "the of and to in is you that it he was for on are as with his they at be this from "
    "have or by one had not but what all were when we there can an your which their said "
    "if do will each about how up out them then she many some so these would other into "
    "has more her two like him see time could no make than first been its who now people "
    "my made over did down "
)
_WORDS = _VOCABULARY.split()
_CONTENDERS = ("duckdb", "blend", "exact", "before")


def write_prompts(path: Path, n_rows: int, seed: int = 0) -> None:
    """n_rows JSONL lines: 80% {custom_id, prompt}, 20% {custom_id, messages}; ~40% carry
    sampling fields; prompts are 20-60 words from a small vocabulary (~240 bytes a line)."""
    rng = random.Random(seed)
    with path.open("wb", buffering=1 << 20) as f:
        for i in range(n_rows):
            text = " ".join(rng.choices(_WORDS, k=rng.randint(20, 60)))
            record: dict[str, object] = {"custom_id": f"req-{i}"}
            if rng.random() < 0.8:
                record["prompt"] = text
            else:
                record["messages"] = [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": text},
                ]
            if rng.random() < 0.4:
                record["max_tokens"] = rng.choice((64, 128, 256, 512))
                record["temperature"] = rng.choice((0.0, 0.7, 1.0))
            f.write(orjson.dumps(record) + b"\n")


def run_contender(contender: str, path: Path, work: Path) -> dict[str, object]:
    """Run one contender in this process; the result as a dict (printed as JSON).

    Seconds count the work, not the imports before it (blend's take ~1-3 s, DuckDB's less).
    """
    if contender == "duckdb":
        import duckdb

        started = time.perf_counter()
        con = duckdb.connect(str(work / "duckdb.db"))
        con.execute("CREATE TABLE t AS SELECT * FROM read_json(?)", [str(path)])
        rows = con.execute("SELECT count(*) FROM t").fetchall()[0][0]
        con.close()
        return {"rows": rows, "seconds": time.perf_counter() - started}
    from blend.ingest import ingest_file
    from blend.store.database import Store

    started = time.perf_counter()
    report = ingest_file(
        Store.open(work / f"store-{contender}"), path, "bench", vectorised=contender != "exact"
    )
    return {
        "rows": report.n_rows,
        "rejected": report.n_rejected,
        "seconds": time.perf_counter() - started,
    }


def measure(
    contender: str, path: Path, work: Path, before: Path | None = None
) -> dict[str, object]:
    """Run a contender in a child process: its result plus its peak RSS in MB. "before" imports
    blend from the checkout `before` (first on PYTHONPATH)."""
    env = dict(os.environ)
    if contender == "before":
        assert before is not None
        env["PYTHONPATH"] = os.pathsep.join([str(before), env.get("PYTHONPATH", "")])
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", contender, str(path), str(work)],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{contender} failed with exit code {child.returncode}")
    result: dict[str, object] = json.loads(output.decode().strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    return result


def bench_size(n_rows: int, contenders: list[str], repeat: int, before: Path | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="blend-ingest-bench-") as tmp:
        work = Path(tmp)
        path = work / "prompts.jsonl"
        started = time.perf_counter()
        write_prompts(path, n_rows)
        size_mb = path.stat().st_size / 1e6
        written = time.perf_counter() - started
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"rows={n_rows:,} file={size_mb:,.0f} MB (written in {written:.0f} s), load {load}")
        runs: dict[str, list[dict[str, object]]] = {contender: [] for contender in contenders}
        for _ in range(repeat):  # contenders take turns, so load changes hit them alike
            for contender in contenders:
                result = measure(contender, path, work, before)
                runs[contender].append(result)
                seconds = float(result["seconds"])  # type: ignore[arg-type]
                print(
                    f"  {contender:7s} seconds={seconds:7.2f} rows/s={n_rows / seconds:>10,.0f} "
                    f"MB/s={size_mb / seconds:6.1f} peak_rss={result['peak_rss_mb']:6.0f} MB "
                    f"accepted={result['rows']:,}"
                )
                for leftover in [*work.glob("store-*"), *work.glob("duckdb.db*")]:
                    _remove(leftover)  # keep the disk use to one database at a time
        if "duckdb" not in runs:
            return
        for contender in contenders:
            if contender == "duckdb":
                continue
            ratios = [
                float(mine["seconds"]) / float(reference["seconds"])  # type: ignore[arg-type]
                for mine, reference in zip(runs[contender], runs["duckdb"], strict=True)
            ]
            print(
                f"  {contender} / duckdb time = {statistics.median(ratios):.2f}x (median of "
                f"{len(ratios)}: {', '.join(f'{r:.2f}' for r in ratios)})"
            )


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[500_000])
    parser.add_argument("--exact", action="store_true", help="also run the per-record path")
    parser.add_argument(
        "--before", type=Path, help="also run blend from this checkout (the code before a change)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of all contenders (median ratio reported)"
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("CONTENDER", "FILE", "WORK"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        contender, path, work = args.child
        print(json.dumps(run_contender(contender, Path(path), Path(work))))
        return
    contenders = [
        "duckdb",
        "blend",
        *(["before"] if args.before else []),
        *(["exact"] if args.exact else []),
    ]
    assert set(contenders) <= set(_CONTENDERS)
    for n_rows in args.rows:
        bench_size(n_rows, contenders, args.repeat, args.before)
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
