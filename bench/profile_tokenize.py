"""The profile's tokenization, in one process (as before issue 19) vs on every core, side by side.

    python bench/profile_tokenize.py --rows 100000
    python bench/profile_tokenize.py --rows 1000000 --modes one-process pool

Few-shot prompts (bench/workloads/scale_prompts.py, one row in five a chat) are ingested once
into a store; then each mode profiles the same snapshot with the demo model's tokenizer in a
fresh child process, one mode after the other, so that its figures are its own:
  one-process      workers=1: the tokenizer in the stage's process (the code before this
                   change: the fast tokenizer's batch call, its Rust threads on)
  one-thread       the same with TOKENIZERS_PARALLELISM=false: what those threads add
  pool             workers=None: a spawned process per core, one tokenizer each
  ray              TokenizeOptions(ray=True) on a new local Ray cluster (its start included)
For each: tokenize_s (read prompts + tokenize + write token rows), the stage's wall seconds,
CPU seconds of the child and its worker processes (Ray's actors are not counted), peak RSS
of the child and of its largest worker, and the load average (1 min) before and after: the
machine is shared, so compare the modes of one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODES = ("one-process", "one-thread", "pool", "ray")
DATASET = "fewshot"


def child(store_dir: str, model_dir: str, mode: str) -> dict[str, Any]:
    from blend.profile.stage import profile_dataset
    from blend.profile.token_batches import TokenizeOptions
    from blend.store.database import Store

    options = {
        "one-process": TokenizeOptions(workers=1),
        "one-thread": TokenizeOptions(workers=1),
        "pool": TokenizeOptions(),
        "ray": TokenizeOptions(ray=True),
    }[mode]
    started = time.perf_counter()
    report = profile_dataset(Store.open(store_dir), DATASET, Path(model_dir), tokenize=options)
    seconds = time.perf_counter() - started
    me = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's, once shut down
    return {
        "tokenize_s": round(report.tokenize_s, 1),
        "stage_s": round(seconds, 1),
        "cpu_s": round(me.ru_utime + me.ru_stime + workers.ru_utime + workers.ru_stime, 1),
        "peak_rss_gb": round(me.ru_maxrss / 2**20, 2),
        "worker_peak_rss_gb": round(workers.ru_maxrss / 2**20, 2),
        "rows": report.n_prompts,
        "tokens": report.input_tokens,
        "sharing_ratio": report.sharing_ratio,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES[:3]))
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    with tempfile.TemporaryDirectory(prefix="blend-tokenize-bench-") as temporary:
        work = args.work or Path(temporary)
        store_dir, model_dir = prepare(work, args.rows)
        for mode in args.modes:
            env = dict(os.environ)
            if mode == "one-thread":
                env["TOKENIZERS_PARALLELISM"] = "false"
            load = os.getloadavg()[0]
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(store_dir), str(model_dir), mode],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            result["load"] = [round(load, 1), round(os.getloadavg()[0], 1)]
            print(json.dumps({"mode": mode, "rows": args.rows, **result}), flush=True)


def prepare(work: Path, rows: int) -> tuple[Path, Path]:
    """The store with `rows` few-shot prompts ingested (kept in --work between runs), and
    the demo model."""
    sys.path.insert(0, str(REPO))
    from bench.workloads.scale_prompts import write_prompts
    from blend.demo.model import ensure_tiny_model
    from blend.ingest import ingest_file
    from blend.store.database import Store

    work.mkdir(parents=True, exist_ok=True)
    store_dir = work / f"store-{rows}"
    if not (store_dir / "ingested").is_file():
        prompts = work / f"fewshot-{rows}.jsonl"
        write_prompts(prompts, "fewshot", rows)
        ingest_file(Store.open(store_dir), prompts, DATASET)
        prompts.unlink()
        (store_dir / "ingested").touch()
    return store_dir, ensure_tiny_model(work / "models")


if __name__ == "__main__":
    main()
