"""`blend export` at scale: peak memory and wall time against the number of answers.

Builds a store with N synthetic answered prompts straight through DuckDB (the prompts table,
and result parts of RESULT_SCHEMA written by COPY, 100,000 rows a part; no engine), then runs
`blend export` in a child process per format and reads the child's peak RSS. The export's
claim: memory bounded by its batch (8,192 rows), not by the dataset.

    .venv/bin/python bench/export_scale.py --rows 1000000 10000000 --formats openai-batch parquet
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blend.store.database import Store

DATASET = "scale"
RUN_ID = "run-20261207T000000Z-000000"
PART_ROWS = 100_000


def build_store(root: Path, n_rows: int) -> Store:
    """A store whose dataset `scale` has n_rows prompts, every one answered once (1 in 100 an
    error row), with ~200-character answers."""
    store = Store.open(root)
    parts = store.results_dir / f"dataset={DATASET}" / f"run_id={RUN_ID}"
    parts.mkdir(parents=True)
    with store.connect(views=False) as con:
        con.execute("SET preserve_insertion_order = false")
        con.execute(
            "INSERT INTO datasets VALUES (?, 1, 'synthetic', 'x', 'jsonl', now(), ?, 0)",
            [DATASET, n_rows],
        )
        con.execute(
            """
            INSERT INTO prompts
            SELECT ?, 1, 'r' || i, i + 1, md5('p' || i), 'prompt number ' || i, NULL,
                   '{"max_tokens":64}', 64
            FROM range(?) AS t(i)
            """,
            [DATASET, n_rows],
        )
        for start in range(0, n_rows, PART_ROWS):
            stop = min(n_rows, start + PART_ROWS)
            con.execute(
                f"""
                COPY (
                    SELECT '{DATASET}' AS dataset, 1::INTEGER AS snapshot, 'r' || i AS request_id,
                        i::BIGINT AS seq, md5('p' || i) AS prompt_sha256,
                        CASE WHEN i % 100 = 0 THEN NULL
                             ELSE repeat('an answer of some length ', 8) || i END AS output_text,
                        [1, 2, 3]::INTEGER[] AS output_token_ids,
                        CASE WHEN i % 100 = 0 THEN 'error' ELSE 'stop' END AS finish_reason,
                        14::INTEGER AS n_prompt_tokens, 48::INTEGER AS n_output_tokens,
                        0::INTEGER AS n_cached_tokens,
                        CASE WHEN i % 100 = 0 THEN 'prompt too long' END AS error,
                        '{RUN_ID}' AS run_id, 'plan-x' AS plan_id, 'tiny' AS model,
                        'm' AS model_sha256, NULL::VARCHAR AS model_revision,
                        't' AS tokenizer_sha256, '{{"max_tokens":64}}' AS sampling_json,
                        'vllm' AS engine, '0.32.0' AS engine_version,
                        now()::TIMESTAMPTZ AS started_at, now()::TIMESTAMPTZ AS finished_at
                    FROM range({start}, {stop}) AS t(i)
                ) TO '{parts}/part-{start // PART_ROWS:05d}.parquet' (FORMAT parquet)
                """
            )
    return store


# The child runs `blend export` and then prints its own peak RSS (KiB) as its last line.
CHILD = """
import resource, sys
from blend.cli import main
sys.argv = ["blend", *sys.argv[1:]]
try:
    main()
except SystemExit as done:
    if done.code:
        raise
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run_export(store: Store, fmt: str, out: Path) -> tuple[float, float, int]:
    """(wall s, peak RSS MiB, bytes written) of one `blend export`, in its own process."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "export", "--dataset", DATASET, "--format", fmt,
         "--out", str(out), "--store", str(store.root)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"export failed: {done.stderr}")
    peak_kib = int(done.stdout.strip().splitlines()[-1])
    return wall, peak_kib / 1024, out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--formats", nargs="+", default=["openai-batch", "parquet"])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    print(
        f"{'rows':>11} {'format':>13} {'build s':>8} {'export s':>9} {'peak MiB':>9} {'MB out':>8}"
    )
    for n_rows in sorted(args.rows):
        root = Path(tempfile.mkdtemp(prefix="blend-export-", dir=args.workdir))
        try:
            started = time.perf_counter()
            store = build_store(root / "store", n_rows)
            build_s = time.perf_counter() - started
            for fmt in args.formats:
                out = root / f"answers.{fmt}"
                wall, peak, size = run_export(store, fmt, out)
                print(
                    f"{n_rows:>11,} {fmt:>13} {build_s:>8.1f} {wall:>9.1f} {peak:>9.0f} "
                    f"{size / 1e6:>8.0f}",
                    flush=True,
                )
                out.unlink()
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
