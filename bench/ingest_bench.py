"""Benchmark ingest_file on synthetic JSONL prompts: rows/s and peak RSS.

    python bench/ingest_bench.py --rows 100000 1000000

Each size runs in a fresh child process so that its peak RSS is its own. The file is written
streaming into a temporary folder (deleted afterwards) together with a fresh store.
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
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


def write_prompts(path: Path, n_rows: int, seed: int = 0) -> None:
    """n_rows JSONL lines: 80% {custom_id, prompt}, 20% {custom_id, messages}; ~40% carry
    sampling fields; prompts are 20-60 words from a small vocabulary."""
    rng = random.Random(seed)
    with path.open("wb") as f:
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


def run_one(n_rows: int) -> None:
    """Generate, ingest, print one result line (in this process)."""
    from blend.ingest import ingest_file
    from blend.store import Store

    with tempfile.TemporaryDirectory(prefix="blend-bench-") as tmp:
        path = Path(tmp) / "prompts.jsonl"
        write_prompts(path, n_rows)
        size_mb = path.stat().st_size / 1e6
        report = ingest_file(Store.open(Path(tmp) / "store"), path, "bench")
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(
            f"rows={n_rows:>9,} file={size_mb:7.1f} MB accepted={report.n_rows:,} "
            f"seconds={report.seconds:6.2f} rows/s={n_rows / report.seconds:>9,.0f} "
            f"peak_rss={peak_mb:6.0f} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--one", action="store_true", help="run a single size in-process")
    args = parser.parse_args()
    if args.one:
        run_one(args.rows[0])
        return
    for n_rows in args.rows:
        subprocess.run([sys.executable, __file__, "--one", "--rows", str(n_rows)], check=True)


if __name__ == "__main__":
    main()
