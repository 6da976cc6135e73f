"""The execute stage: run a stored plan through an engine, write results with lineage.

Invariant: every plan item ends as exactly one row in the run's Parquet parts (a completion or
an error row). Finished rows are flushed as atomic parts every `flush_rows` rows or
`flush_seconds`; a re-run with the same run_id skips request ids already in finished parts,
so a crash loses at most the unflushed rows and never duplicates one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from blend import sql
from blend.engines.base import Engine, EngineConfig, EngineOutput, EngineRequest
from blend.lineage import RunLineage, git_revision, model_sha256
from blend.results import (
    ResultRow,
    done_request_ids,
    remove_temporary_parts,
    run_dir,
    write_part,
)
from blend.store import Store, fetch_arrow, fetch_dicts
from blend.tokenize import tokenizer_sha256

ProgressCallback = Callable[[int, int, int], None]  # (rows done, rows total, output tokens)
EngineFactory = Callable[[EngineConfig], Engine]


class ExecuteError(Exception):
    """A plan cannot be executed as asked (unknown plan or run, tokenizer mismatch)."""


@dataclass(frozen=True, slots=True)
class RunReport:
    run_id: str
    plan_id: str
    dataset: str
    status: str  # completed | failed
    n_requests: int  # result rows of the run (all parts, resumed ones included)
    n_errors: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    prefix_cache_hit_rate: float | None  # engine counter, this process only
    engine_start_s: float
    wall_s: float  # this execution, engine start included
    results_dir: Path
    n_skipped: int  # rows already done by an earlier attempt of the same run

    @property
    def tokens_per_second(self) -> float:
        return (self.input_tokens + self.output_tokens) / self.wall_s if self.wall_s else 0.0


@dataclass(frozen=True, slots=True)
class ExecuteOptions:
    flush_rows: int = 256  # a part at least every this many finished requests
    flush_seconds: float = 30.0  # ... or this often (s)
    chunk_rows: int = 4096  # plan items read from DuckDB at a time
    flow_run_id: str | None = None


def new_run_id() -> str:
    return f"run-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def default_engine_factory(config: EngineConfig) -> Engine:
    from blend.engines.vllm_engine import VllmEngine

    return VllmEngine(config)


def execute_plan(
    store: Store,
    plan_id: str,
    engine_config: EngineConfig,
    *,
    run_id: str | None = None,
    options: ExecuteOptions | None = None,
    engine_factory: EngineFactory = default_engine_factory,
    progress: ProgressCallback | None = None,
) -> RunReport:
    """Run plan `plan_id`; with `run_id` of an earlier attempt, resume it."""
    options = options or ExecuteOptions()
    started = time.perf_counter()
    header = _plan_header(store, plan_id)
    tokenizer_hash = tokenizer_sha256(engine_config.model_dir)
    if tokenizer_hash != header["tokenizer_sha256"]:
        raise ExecuteError(
            f"plan {plan_id} was tokenized with tokenizer {header['tokenizer_sha256'][:12]}, "
            f"but {engine_config.model_dir} has {tokenizer_hash[:12]}: profile and plan the "
            "dataset with this model first"
        )
    run_id = run_id or new_run_id()
    directory = run_dir(store.results_dir, header["dataset"], run_id)
    remove_temporary_parts(directory)
    done = done_request_ids(directory)
    engine = engine_factory(engine_config)
    try:
        lineage = RunLineage(
            run_id=run_id,
            plan_id=plan_id,
            dataset=header["dataset"],
            snapshot=header["snapshot"],
            model=engine_config.model_dir.name,
            model_sha256=model_sha256(engine_config.model_dir),
            tokenizer_sha256=tokenizer_hash,
            engine=engine.name,
            engine_version=engine.version,
            engine_params_json=_engine_params_json(engine_config, engine.max_model_len),
            flow_run_id=options.flow_run_id,
            git_revision=git_revision(),
        )
        _record_run_start(
            store, lineage, directory, resume=bool(done) or run_id_exists(store, run_id)
        )
        writer = _PartWriter(directory, lineage, options, start_index=len(done))
        status = "failed"
        try:
            requests = _pending_requests(store, header, done, options.chunk_rows)
            total = header["n_requests"]
            for output in engine.generate(r for r, _ in requests.iterate()):
                writer.add(_result_row(output, requests.meta[output.request_id], lineage))
                requests.meta.pop(output.request_id)
                if progress is not None:
                    progress(len(done) + writer.rows_written, total, writer.output_tokens)
            status = "completed"
        finally:
            writer.flush()
            stats = engine.stats()
            wall_s = time.perf_counter() - started
            totals = _finish_run(store, run_id, directory, status, engine.start_seconds, wall_s)
    finally:
        engine.close()
    return RunReport(
        run_id=run_id,
        plan_id=plan_id,
        dataset=header["dataset"],
        status=status,
        prefix_cache_hit_rate=stats.prefix_cache_hit_rate,
        engine_start_s=engine.start_seconds,
        wall_s=wall_s,
        results_dir=directory,
        n_skipped=len(done),
        **totals,
    )


def run_id_exists(store: Store, run_id: str) -> bool:
    with store.connect() as con:
        return bool(fetch_dicts(con, sql.load("execute/run_by_id"), {"run_id": run_id}))


def _plan_header(store: Store, plan_id: str) -> dict:
    with store.connect() as con:
        rows = fetch_dicts(con, sql.load("execute/plan_header"), {"plan_id": plan_id})
    if not rows:
        raise ExecuteError(f"no plan {plan_id!r} in {store.db_path}: run `blend plan` first")
    return rows[0]


def _engine_params_json(config: EngineConfig, max_model_len: int) -> str:
    params = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in {
            f: getattr(config, f) for f in config.__dataclass_fields__ if f != "model_dir"
        }.items()
    }
    params["max_model_len"] = max_model_len
    return orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True, slots=True)
class _RequestMeta:
    seq: int
    prompt_sha256: str
    sampling_json: str
    n_prompt_tokens: int


class _PendingRequests:
    """Plan items not yet done, read from DuckDB chunk by chunk in plan order."""

    def __init__(self, store: Store, header: dict, done: set[str], chunk_rows: int) -> None:
        self._store, self._header, self._done, self._chunk_rows = store, header, done, chunk_rows
        self.meta: dict[str, _RequestMeta] = {}  # requests handed out and not yet finished

    def iterate(self) -> Iterator[tuple[EngineRequest, _RequestMeta]]:
        params = {
            k: self._header[k] for k in ("plan_id", "dataset", "snapshot", "tokenizer_sha256")
        }
        for seq_start in range(0, self._header["n_requests"], self._chunk_rows):
            with self._store.connect() as con:
                chunk = fetch_arrow(
                    con,
                    sql.load("execute/plan_chunk"),
                    {**params, "seq_start": seq_start, "seq_end": seq_start + self._chunk_rows},
                ).to_pylist()
            for row in chunk:
                if row["request_id"] in self._done:
                    continue
                meta = _RequestMeta(
                    seq=row["seq"],
                    prompt_sha256=row["prompt_sha256"],
                    sampling_json=row["sampling_json"],
                    n_prompt_tokens=len(row["token_ids"]),
                )
                self.meta[row["request_id"]] = meta
                request = EngineRequest(
                    request_id=row["request_id"],
                    prompt_token_ids=row["token_ids"],
                    sampling=orjson.loads(row["sampling_json"]),
                )
                yield request, meta


def _pending_requests(
    store: Store, header: dict, done: set[str], chunk_rows: int
) -> _PendingRequests:
    return _PendingRequests(store, header, done, chunk_rows)


def _result_row(output: EngineOutput, meta: _RequestMeta, lineage: RunLineage) -> ResultRow:
    return ResultRow(
        dataset=lineage.dataset,
        snapshot=lineage.snapshot,
        request_id=output.request_id,
        seq=meta.seq,
        prompt_sha256=meta.prompt_sha256,
        output_text=output.output_text,
        output_token_ids=output.output_token_ids,
        finish_reason=output.finish_reason,
        n_prompt_tokens=output.n_prompt_tokens,
        n_output_tokens=output.n_output_tokens,
        n_cached_tokens=output.n_cached_tokens,
        error=output.error,
        run_id=lineage.run_id,
        plan_id=lineage.plan_id,
        model=lineage.model,
        model_sha256=lineage.model_sha256,
        tokenizer_sha256=lineage.tokenizer_sha256,
        sampling_json=meta.sampling_json,
        engine=lineage.engine,
        engine_version=lineage.engine_version,
        started_at=output.started_at,
        finished_at=output.finished_at,
    )


class _PartWriter:
    """Buffers finished rows and writes them as atomic parts by count or age."""

    def __init__(
        self, directory: Path, lineage: RunLineage, options: ExecuteOptions, start_index: int
    ) -> None:
        self._directory = directory
        self._metadata = lineage.as_metadata()
        self._options = options
        self._buffer: list[ResultRow] = []
        self._next_index = start_index
        self._last_flush = time.monotonic()
        self.rows_written = 0
        self.output_tokens = 0

    def add(self, row: ResultRow) -> None:
        self._buffer.append(row)
        self.rows_written += 1
        self.output_tokens += row.n_output_tokens
        age = time.monotonic() - self._last_flush
        if len(self._buffer) >= self._options.flush_rows or age >= self._options.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            write_part(self._directory, self._buffer, self._metadata, self._next_index)
            self._next_index += len(self._buffer)
            self._buffer = []
        self._last_flush = time.monotonic()


def _record_run_start(store: Store, lineage: RunLineage, directory: Path, *, resume: bool) -> None:
    with store.connect() as con:
        if resume and fetch_dicts(con, sql.load("execute/run_by_id"), {"run_id": lineage.run_id}):
            con.execute(
                sql.load("execute/resume_run"),
                {"run_id": lineage.run_id, "flow_run_id": lineage.flow_run_id},
            )
            return
        con.execute(
            sql.load("execute/insert_run"),
            {
                "run_id": lineage.run_id,
                "plan_id": lineage.plan_id,
                "dataset": lineage.dataset,
                "snapshot": lineage.snapshot,
                "flow_run_id": lineage.flow_run_id,
                "engine": lineage.engine,
                "engine_version": lineage.engine_version,
                "model": lineage.model,
                "model_sha256": lineage.model_sha256,
                "params_json": lineage.engine_params_json,
                "results_uri": str(directory),
            },
        )


def _finish_run(
    store: Store, run_id: str, directory: Path, status: str, engine_start_s: float, wall_s: float
) -> dict[str, int]:
    totals = {
        "n_requests": 0,
        "n_errors": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_tokens": 0,
    }
    with store.connect() as con:
        if any(directory.glob("part-*.parquet")):
            row = fetch_dicts(
                con, sql.load("results/run_totals"), {"glob": str(directory / "part-*.parquet")}
            )[0]
            totals = {k: int(row[k]) for k in totals}
        con.execute(
            sql.load("execute/finish_run"),
            {
                "run_id": run_id,
                "status": status,
                "engine_start_s": engine_start_s,
                "wall_s": wall_s,
                **totals,
            },
        )
    return totals
