"""Pipeline overhead around the engine: 10k short requests on the vLLM CPU engine.

Runs the real execute stage (tiny local model, a few output tokens per request) and splits
its wall time into engine start, time inside the engine's own calls (add_request + step) and
everything else (plan reads, result rows, Parquet parts, progress, lineage): the overhead.

    python bench/overhead.py                  # 10,000 requests, 4 output tokens each
    python bench/overhead.py --requests 2000 --max-tokens 8
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def write_prompts(path: Path, n_requests: int, max_tokens: int, seed: int) -> Path:
    rng = random.Random(seed)
    words = ["def", "class", "yield", "lambda", "import", "return", "async", "with", "try"]
    with path.open("w") as f:
        for i in range(n_requests):
            prompt = f"question {i}: " + " ".join(rng.choices(words, k=rng.randint(4, 24)))
            record = {"custom_id": f"q{i:06d}", "prompt": prompt, "max_tokens": max_tokens}
            f.write(json.dumps(record) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--store", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()

    from blend.demo.model import ensure_tiny_model
    from blend.engines.base import EngineConfig
    from blend.execute.stage import ExecuteOptions, execute_plan
    from blend.ingest import ingest_file
    from blend.plan.stage import PlanOptions, plan_dataset
    from blend.profile.stage import profile_dataset
    from blend.store.database import Store

    work = args.store or Path(tempfile.mkdtemp(prefix="blend-overhead-"))
    store = Store.open(work / "store")
    model = ensure_tiny_model(work / "models")
    started = time.perf_counter()
    source = write_prompts(work / "prompts.jsonl", args.requests, args.max_tokens, seed=0)
    ingest_file(store, source, "overhead")
    profile_dataset(store, "overhead", model)
    plan_id = plan_dataset(store, "overhead", PlanOptions(planner="dfs"), model_dir=model).plan_id
    setup_s = time.perf_counter() - started

    updates = 0

    def progress(done: int, total: int, output_tokens: int) -> None:
        nonlocal updates
        updates += 1

    config = EngineConfig(model_dir=model, max_num_seqs=args.max_num_seqs)
    r = execute_plan(store, plan_id, config, options=ExecuteOptions(), progress=progress)
    running_s = r.wall_s - r.engine_start_s
    print(
        f"setup (ingest, profile, plan): {setup_s:.1f} s\n"
        f"execute: {r.n_requests} rows ({r.n_errors} errors), {r.input_tokens:,} prompt + "
        f"{r.output_tokens:,} output tokens, {r.status}\n"
        f"  wall            {r.wall_s:8.2f} s\n"
        f"  engine start    {r.engine_start_s:8.2f} s\n"
        f"  engine busy     {r.engine_busy_s:8.2f} s  (add_request + step)\n"
        f"  overhead        {r.overhead_s:8.2f} s  = {r.overhead_fraction:.1%} of the "
        f"{running_s:.2f} s after engine start "
        f"({r.overhead_s / r.wall_s:.1%} of wall)\n"
        f"  throughput      {r.tokens_per_second:8.0f} tok/s; {updates} progress updates"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
