"""The profile stage: tokenize a snapshot's prompts and measure what the planner needs.

Invariant: after `profile_dataset` returns, `prompt_tokens` holds exactly one row per prompt of
(dataset, snapshot) for the model's tokenizer, and `profiles` one row describing those rows.
The token rows are replaced in one transaction and the profile row (with the request classes)
written in a second: a crash in the first leaves the previous rows, a crash between the two
leaves new token rows beside the previous profile row of the same key (the same prompts and
tokenizer give the same rows) or none (no later stage reads tokens without a profile row),
and a re-run replaces rather than duplicates.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from blend.engines.model_source import ModelSource, model_source
from blend.engines.tokenize import encode_batch, model_max_len, tokenizer_sha256
from blend.profile.prefix import PrefixMeasures, prefix_measures
from blend.profile.token_batches import (
    TOKEN_SCHEMA,
    Encoder,
    TokenizeOptions,
    local_workers,
    token_batches,
)
from blend.profile.token_order import sorted_token_tables
from blend.store import sql
from blend.store.database import Store, fetch_dicts, transaction
from blend.store.memory import memory_capped
from blend.store.names import NameKind, validate_name

if TYPE_CHECKING:
    from blend.control.classes import RequestClass

MAX_LISTED_IDS = 20  # request_ids listed per over-length class in a report
# DuckDB's memory during a profile (at most 80% of RAM): its reads, the over-length join and
# the token rows' insert spill beyond it; the prefix measures sort outside DuckDB
# (profile/token_order.py), so nothing the profile asks of DuckDB needs memory per prompt.
PROFILE_MEMORY_BYTES = 1 << 30

ProgressCallback = Callable[[int, int], None]  # (prompts tokenized so far, prompts in total)

_STAGING_PREFIX = "profile-tokens-"  # <store>/tmp/profile-tokens-<uuid>.parquet


class ProfileError(ValueError):
    """The dataset cannot be profiled as asked (unknown dataset or snapshot, bad option)."""


@dataclass(frozen=True, slots=True)
class ProfileKey:
    """What a profile describes: one snapshot of a dataset, tokenized by one tokenizer."""

    dataset: str
    snapshot: int
    tokenizer_sha256: str

    def params(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "snapshot": self.snapshot,
            "tokenizer_sha256": self.tokenizer_sha256,
        }


@dataclass(frozen=True, slots=True)
class PrefixGroup:
    """A run of lexicographically adjacent prompts that share a long prefix."""

    rank: int  # 1 = the group that saves the most prefill tokens
    n_prompts: int  # >= 2
    shared_prefix_tokens: int  # tokens every prompt of the group starts with
    saved_tokens: int  # (n_prompts - 1) * shared_prefix_tokens: prefill computed once
    first_request_id: str  # the group's first prompt in sorted (DFS) order


@dataclass(frozen=True, slots=True)
class ProfileReport:
    """One profiled snapshot. Lengths are in tokens, times in wall seconds."""

    dataset: str
    snapshot: int
    tokenizer_sha256: str
    model: str  # the model's Hugging Face id, else its folder's name (engines/model_source.py)
    max_model_len: int  # context length (tokens): prompt + output must fit
    n_prompts: int
    input_tokens: int  # sum of prompt tokens
    mean_tokens: float | None  # prompt length stats; None when there are no prompts
    p50_tokens: float | None
    p90_tokens: float | None
    p99_tokens: float | None
    max_tokens: int | None  # longest prompt
    n_over_length: int  # n + 1 > max_model_len: the engine cannot produce a single token
    over_length_ids: tuple[str, ...]  # first MAX_LISTED_IDS of them, by request_id
    n_will_truncate: int  # runnable, but n + max_tokens > max_model_len: output will be cut
    will_truncate_ids: tuple[str, ...]  # first MAX_LISTED_IDS of them, by request_id
    unique_prefix_tokens: int  # nodes of the prompt token trie: prefill work with sharing
    sharing_ratio: float | None  # 1 - unique_prefix_tokens / input_tokens (DFS order)
    min_shared_tokens: int  # LCP threshold of the prefix groups
    n_prefix_groups: int  # groups of >= 2 prompts sharing >= min_shared_tokens
    top_groups: tuple[PrefixGroup, ...]  # by saved_tokens, descending
    tokenize_s: float  # read prompts + tokenize + store token rows
    sql_s: float  # the profile queries
    # request classes on (prompt tokens, estimated output tokens): blend/control/classes.py
    request_classes: tuple[RequestClass, ...] = ()
    model_revision: str | None = None  # the model's Hugging Face commit (None: not from the hub)

    @property
    def tokens_per_s(self) -> float:
        """Tokenization throughput (prompt tokens per second of tokenize_s)."""
        return self.input_tokens / self.tokenize_s if self.tokenize_s > 0 else 0.0

    @property
    def prompts_per_s(self) -> float:
        return self.n_prompts / self.tokenize_s if self.tokenize_s > 0 else 0.0

    @property
    def key(self) -> ProfileKey:
        return ProfileKey(self.dataset, self.snapshot, self.tokenizer_sha256)


@dataclass(frozen=True, slots=True)
class _Measures:
    """What the profile SQL found, before it becomes a report."""

    lengths: dict[str, Any]
    over_length: dict[str, Any]
    prefixes: PrefixMeasures  # sharing and the top groups (profile/prefix.py)


def profile_dataset(
    store: Store,
    dataset: str,
    model_dir: str | Path,
    *,
    snapshot: int | None = None,
    batch_size: int = 2048,
    top_groups: int = 10,
    min_shared_tokens: int = 128,
    progress: ProgressCallback | None = None,
    model_sha256: str | None = None,
    tokenize: TokenizeOptions | None = None,
) -> ProfileReport:
    """Tokenize `dataset` (its latest snapshot unless `snapshot`) and store its profile.

    batch_size: prompts per tokenizer call; top_groups: prefix groups listed in the report;
    min_shared_tokens: the prefix (tokens) prompts must share to form a group.
    model_sha256: the model's earlier results of the dataset inform the request classes'
    output estimates (as they inform the plan's). tokenize: where the prompts are tokenized
    (default: a process per core of this machine; TokenizeOptions(ray=True): on Ray).
    """
    validate_name(dataset, NameKind.DATASET, "profile_dataset(dataset=...)")
    _check_options(batch_size, top_groups, min_shared_tokens)
    tokenize = tokenize or TokenizeOptions()
    tokenize.check()
    model_path = Path(model_dir)
    max_len = model_max_len(model_path)
    sha = tokenizer_sha256(model_path)
    with store.connect() as con, memory_capped(con, PROFILE_MEMORY_BYTES):
        key = ProfileKey(dataset, resolve_snapshot(con, dataset, snapshot), sha)
        started = time.perf_counter()
        # encode_batch read here, not imported by the workers: a stand-in put in its place
        # (bench/scale.py's byte tokenizer) reaches them by reference
        tokens = TokenSource(model_path, encode_batch, tokenize)
        # The token rows commit on their own: 10M uncommitted rows held DuckDB's memory cap
        # while the measures' joins needed it (out of memory at 10M, fine at 3M)
        with transaction(con):
            store_prompt_tokens(con, key, tokens, batch_size, store.tmp_dir, progress)
        tokenized = time.perf_counter()
        with transaction(con):
            report = _measure_and_save(
                con,
                key,
                model_path,
                max_len,
                min_shared_tokens,
                top_groups,
                store.tmp_dir,
                model_sha256,
                tokenize_s=tokenized - started,
                started=tokenized,
            )
    return report


def _measure_and_save(
    con: duckdb.DuckDBPyConnection,
    key: ProfileKey,
    model_path: Path,
    max_len: int,
    min_shared_tokens: int,
    top_groups: int,
    tmp_dir: Path,
    model_sha256: str | None,
    *,
    tokenize_s: float,
    started: float,
) -> ProfileReport:
    """Measure the committed token rows of `key`, save the profile row and the request
    classes (the caller's transaction)."""
    measures = _measure(con, key, max_len, min_shared_tokens, top_groups, tmp_dir)
    report = _report(
        key,
        model_source(model_path.resolve()),
        max_len,
        min_shared_tokens,
        measures,
        tokenize_s=tokenize_s,
        sql_s=time.perf_counter() - started,
    )
    save_profile(con, report)
    return replace(report, request_classes=_request_classes(con, key, max_len, model_sha256))


def _request_classes(
    con: duckdb.DuckDBPyConnection, key: ProfileKey, max_len: int, model_sha256: str | None
) -> tuple[RequestClass, ...]:
    """Cluster the profiled requests and store the classes (blend/control/class_store.py)."""
    from blend.control.class_store import estimated_classes, save_classes

    classes = estimated_classes(con, key.params(), max_len, model_sha256).classes
    save_classes(con, key.params(), classes)
    return classes


@dataclass(frozen=True, slots=True)
class LengthBin:
    lo_tokens: int  # prompts with lo_tokens <= length < hi_tokens
    hi_tokens: int
    n_prompts: int


def length_histogram(store: Store, key: ProfileKey, bin_tokens: int) -> list[LengthBin]:
    """Prompt-length histogram of a profiled snapshot; empty bins are left out."""
    if bin_tokens < 1:
        raise ProfileError(f"bin_tokens must be >= 1, got {bin_tokens}")
    with store.connect() as con:
        rows = fetch_dicts(
            con, sql.load("profile/length_histogram"), {**key.params(), "bin_tokens": bin_tokens}
        )
    return [LengthBin(**row) for row in rows]


def resolve_snapshot(con: duckdb.DuckDBPyConnection, dataset: str, snapshot: int | None) -> int:
    """`snapshot` if the dataset has it, else (None) the dataset's latest snapshot."""
    rows = fetch_dicts(con, sql.load("profile/snapshots"), {"dataset": dataset})
    known = [int(row["snapshot"]) for row in rows]
    if not known:
        raise ProfileError(
            f"Dataset {dataset!r} does not exist in this store: "
            f"ingest it first (blend ingest INPUT --dataset {dataset})"
        )
    if snapshot is None:
        return int(known[-1])
    if snapshot not in known:
        raise ProfileError(f"Dataset {dataset!r} has no snapshot {snapshot} (it has {known})")
    return snapshot


@dataclass(frozen=True, slots=True)
class TokenSource:
    """What turns the prompt batches into token batches, and where it runs."""

    model_dir: Path
    encoder: Encoder
    options: TokenizeOptions

    def batches(
        self, prompt_batches: Iterator[pa.RecordBatch], n_prompts: int
    ) -> Iterator[pa.RecordBatch]:
        options = self.options
        if options.ray:
            from blend.profile.ray_tokenize import ray_token_batches

            return ray_token_batches(
                prompt_batches,
                self.model_dir,
                self.encoder,
                actors=options.workers,
                address=options.ray_address,
                in_flight=options.in_flight,
            )
        workers = local_workers(options, n_prompts)
        return token_batches(
            prompt_batches, self.model_dir, self.encoder, workers, options.in_flight
        )


def store_prompt_tokens(
    con: duckdb.DuckDBPyConnection,
    key: ProfileKey,
    tokens: TokenSource,
    batch_size: int,
    tmp_dir: Path,
    progress: ProgressCallback | None = None,
) -> int:
    """Replace the token rows of `key` with freshly tokenized ones; returns rows written.

    Mutates prompt_tokens; the caller owns the transaction (delete + insert are atomic then).
    The token rows go to a Parquet file under the store's tmp/ folder first, one batch at a
    time, and enter the table in one INSERT from it: DuckDB keeps the many small appends of
    an open transaction in memory (2.5 KB per prompt measured, growing with the dataset),
    while one insert from a file streams.
    """
    total = _count_prompts(con, key)
    staging = _staging_file(tmp_dir)
    try:
        done = _write_token_file(con, key, tokens, batch_size, staging, total, progress)
        con.execute(sql.load("profile/delete_prompt_tokens"), key.params())
        if done:
            con.execute(
                sql.load("profile/insert_prompt_tokens"), {**key.params(), "path": str(staging)}
            )
    finally:
        staging.unlink(missing_ok=True)
    return done


def _staging_file(tmp_dir: Path) -> Path:
    """A fresh Parquet path in tmp_dir; files a killed profile left there are removed first
    (the caller holds the store's writer lock, so no other profile is writing them)."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for stale in tmp_dir.glob(f"{_STAGING_PREFIX}*.parquet"):
        stale.unlink(missing_ok=True)
    return tmp_dir / f"{_STAGING_PREFIX}{uuid.uuid4().hex}.parquet"


def _write_token_file(
    con: duckdb.DuckDBPyConnection,
    key: ProfileKey,
    tokens: TokenSource,
    batch_size: int,
    path: Path,
    total: int,
    progress: ProgressCallback | None,
) -> int:
    """Tokenize the snapshot's prompts into `path` (request_id, token_ids); returns rows."""
    done = 0
    with pq.ParquetWriter(path, TOKEN_SCHEMA) as writer:
        for batch in tokens.batches(_prompt_batches(con, key, batch_size), total):
            writer.write_batch(batch)
            done += batch.num_rows
            if progress is not None:
                progress(done, total)
    return done


def save_profile(con: duckdb.DuckDBPyConnection, report: ProfileReport) -> None:
    """Write the report's row into `profiles`, replacing the row with the same key."""
    con.execute(
        sql.load("profile/upsert_profile"),
        {
            "dataset": report.dataset,
            "snapshot": report.snapshot,
            "tokenizer_sha256": report.tokenizer_sha256,
            "model": report.model,
            "model_revision": report.model_revision,
            "max_model_len": report.max_model_len,
            "profiled_at": datetime.now(UTC),
            "n_prompts": report.n_prompts,
            "input_tokens": report.input_tokens,
            "mean_tokens": report.mean_tokens,
            "p50_tokens": report.p50_tokens,
            "p90_tokens": report.p90_tokens,
            "p99_tokens": report.p99_tokens,
            "max_tokens": report.max_tokens,
            "n_over_length": report.n_over_length,
            "n_will_truncate": report.n_will_truncate,
            "unique_prefix_tokens": report.unique_prefix_tokens,
            "sharing_ratio": report.sharing_ratio,
            "min_shared_tokens": report.min_shared_tokens,
            "n_prefix_groups": report.n_prefix_groups,
            "tokenize_s": report.tokenize_s,
            "sql_s": report.sql_s,
        },
    )


def _check_options(batch_size: int, top_groups: int, min_shared_tokens: int) -> None:
    if batch_size < 1:
        raise ProfileError(f"batch_size must be >= 1 (got {batch_size})")
    if top_groups < 1:
        raise ProfileError(f"top_groups must be >= 1 (got {top_groups})")
    if min_shared_tokens < 1:
        raise ProfileError(f"min_shared_tokens must be >= 1 token (got {min_shared_tokens})")


def _count_prompts(con: duckdb.DuckDBPyConnection, key: ProfileKey) -> int:
    params = {"dataset": key.dataset, "snapshot": key.snapshot}
    return int(fetch_dicts(con, sql.load("profile/count_prompts"), params)[0]["n_prompts"])


def _prompt_batches(
    con: duckdb.DuckDBPyConnection, key: ProfileKey, batch_size: int
) -> Iterator[pa.RecordBatch]:
    """The snapshot's prompts as stored, streamed in record batches of <= batch_size rows.

    They stream from a second connection (a cursor): an open result blocks its own connection.
    Unsorted: the order of token rows does not matter (every query orders what it reads), and
    a sort of every prompt's text would need memory or spill space per prompt.
    """
    params = {"dataset": key.dataset, "snapshot": key.snapshot}
    with con.cursor() as reader_con:
        reader = reader_con.sql(sql.load("profile/prompts"), params=params).to_arrow_reader(
            batch_size
        )
        yield from reader


def _measure(
    con: duckdb.DuckDBPyConnection,
    key: ProfileKey,
    max_model_len: int,
    min_shared_tokens: int,
    top_n: int,
    tmp_dir: Path,
) -> _Measures:
    """The profile's numbers. Prefix sharing and groups are those of sql/profile/
    prefix_sharing.sql and prefix_groups.sql, computed from a sorted stream in bounded
    memory (profile/prefix.py); the SQL stays as the reference the tests compare against."""
    params = key.params()
    over_params = {**params, "max_model_len": max_model_len, "max_ids": MAX_LISTED_IDS}
    return _Measures(
        lengths=fetch_dicts(con, sql.load("profile/length_stats"), params)[0],
        over_length=fetch_dicts(con, sql.load("profile/over_length"), over_params)[0],
        prefixes=prefix_measures(
            sorted_token_tables(con, params, tmp_dir), min_shared_tokens, top_n
        ),
    )


def _report(
    key: ProfileKey,
    model: ModelSource,
    max_model_len: int,
    min_shared_tokens: int,
    m: _Measures,
    *,
    tokenize_s: float,
    sql_s: float,
) -> ProfileReport:
    groups = tuple(
        PrefixGroup(
            rank=g.group_rank,
            n_prompts=g.n_prompts,
            shared_prefix_tokens=g.shared_prefix_tokens,
            saved_tokens=g.saved_tokens,
            first_request_id=g.first_request_id,
        )
        for g in m.prefixes.groups
    )
    return ProfileReport(
        dataset=key.dataset,
        snapshot=key.snapshot,
        tokenizer_sha256=key.tokenizer_sha256,
        model=model.name,
        model_revision=model.revision,
        max_model_len=max_model_len,
        n_prompts=m.lengths["n_prompts"],
        input_tokens=m.lengths["input_tokens"],
        mean_tokens=m.lengths["mean_tokens"],
        p50_tokens=m.lengths["p50_tokens"],
        p90_tokens=m.lengths["p90_tokens"],
        p99_tokens=m.lengths["p99_tokens"],
        max_tokens=m.lengths["max_tokens"],
        n_over_length=m.over_length["n_over_length"],
        over_length_ids=tuple(m.over_length["over_length_ids"]),
        n_will_truncate=m.over_length["n_will_truncate"],
        will_truncate_ids=tuple(m.over_length["will_truncate_ids"]),
        unique_prefix_tokens=m.prefixes.sharing.unique_prefix_tokens,
        sharing_ratio=m.prefixes.sharing.sharing_ratio,
        min_shared_tokens=min_shared_tokens,
        n_prefix_groups=m.prefixes.groups[0].n_groups if m.prefixes.groups else 0,
        top_groups=groups,
        tokenize_s=tokenize_s,
        sql_s=sql_s,
    )
