"""Benchmark the profile stage: synthetic prompts -> profile_dataset, tokenize vs SQL time.

    python bench/profile_bench.py [--n 100000] [--batch-size 2048] [--store DIR]

Prompts are written straight into a temporary store's `prompts` table (no ingest), half chat
rows under a few long shared system prompts, half raw prompts under a few shared few-shot
preambles or none; lengths ~50-600 tokens of the demo corpus text.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from blend.demo.model import CORPUS_PATH, ensure_tiny_model
from blend.profile.stage import MAX_LISTED_IDS, ProfileReport, profile_dataset
from blend.store import sql
from blend.store.database import Store, fetch_dicts

DATASET = "bench"
WORDS = CORPUS_PATH.read_text(encoding="utf-8").split()


def text(rng: random.Random, n_words: int) -> str:
    start = rng.randrange(len(WORDS) - n_words)
    return " ".join(WORDS[start : start + n_words])


def synthetic_prompts(n: int, seed: int) -> pa.Table:
    """n prompts rows: request_id, prompt, messages_json (~3 tokens per corpus word)."""
    rng = random.Random(seed)
    systems = [text(rng, k) for k in (40, 70, 100, 130)]
    preambles = [*(text(rng, k) for k in (30, 60, 90)), ""]
    rows: dict[str, list] = {"request_id": [], "prompt": [], "messages_json": []}
    for i in range(n):
        body = text(rng, rng.randint(15, 120))
        rows["request_id"].append(f"req-{i:07d}")
        if i % 2:
            system = {"role": "system", "content": rng.choice(systems)}
            messages = [system, {"role": "user", "content": body}]
            rows["prompt"].append(None)
            rows["messages_json"].append(json.dumps(messages))
        else:
            rows["prompt"].append(rng.choice(preambles) + "\n" + body)
            rows["messages_json"].append(None)
    return pa.table(rows)


def load_prompts(store: Store, table: pa.Table) -> None:
    with store.connect() as con:
        con.register("bench_prompts", table)
        con.execute(
            "INSERT INTO prompts SELECT $dataset, 1, request_id, row_number() OVER (), "
            "sha256(coalesce(prompt, messages_json)), prompt, messages_json, '{}', 256 "
            "FROM bench_prompts",
            {"dataset": DATASET},
        )


def time_queries(store: Store, report: ProfileReport) -> dict[str, float]:
    """Seconds of each profile query on its own, re-run after the profile."""
    key = {
        "dataset": report.dataset,
        "snapshot": report.snapshot,
        "tokenizer_sha256": report.tokenizer_sha256,
    }
    params = {
        "length_stats": key,
        "over_length": {**key, "max_model_len": report.max_model_len, "max_ids": MAX_LISTED_IDS},
        "prefix_sharing": key,
        "prefix_groups": {**key, "min_shared_tokens": report.min_shared_tokens, "top_n": 10},
    }
    seconds = {}
    with store.connect() as con:
        for name, p in params.items():
            started = time.perf_counter()
            fetch_dicts(con, sql.load(f"profile/{name}"), p)
            seconds[name] = time.perf_counter() - started
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="prompts")
    parser.add_argument("--batch-size", type=int, default=2048, help="prompts per tokenizer call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", type=Path, default=None, help="store folder (default: temp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="blend-profile-bench-") as tmp:
        store = Store.open(args.store or Path(tmp) / "store")
        model_dir = ensure_tiny_model(Path(tmp) / "models")
        started = time.perf_counter()
        load_prompts(store, synthetic_prompts(args.n, args.seed))
        print(f"inserted {args.n:,} prompts in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        report = profile_dataset(store, DATASET, model_dir, batch_size=args.batch_size)
        wall = time.perf_counter() - started
        print_report(report, wall)
        print("per query, re-run alone:")
        for name, seconds in time_queries(store, report).items():
            print(f"  {name:<15} {seconds:6.2f} s")


def print_report(r: ProfileReport, wall_s: float) -> None:
    print(
        f"profile_dataset: {wall_s:.1f} s wall = tokenize {r.tokenize_s:.1f} s "
        f"+ sql {r.sql_s:.1f} s (+ setup {wall_s - r.tokenize_s - r.sql_s:.1f} s)\n"
        f"tokenize: {r.prompts_per_s:,.0f} prompts/s, {r.tokens_per_s:,.0f} tokens/s "
        f"(read + tokenize + insert)\n"
        f"{r.n_prompts:,} prompts, {r.input_tokens:,} tokens; mean {r.mean_tokens:.0f} "
        f"p50 {r.p50_tokens:.0f} p90 {r.p90_tokens:.0f} p99 {r.p99_tokens:.0f} max {r.max_tokens}\n"
        f"over length {r.n_over_length}, will truncate {r.n_will_truncate} "
        f"(max_model_len {r.max_model_len}); sharing ratio {r.sharing_ratio:.3f} "
        f"({r.unique_prefix_tokens:,} unique prefix tokens); {r.n_prefix_groups} prefix groups"
    )
    for g in r.top_groups[:5]:
        print(
            f"  group {g.rank}: {g.n_prompts} prompts x {g.shared_prefix_tokens} tokens "
            f"saves {g.saved_tokens:,}"
        )


if __name__ == "__main__":
    main()
