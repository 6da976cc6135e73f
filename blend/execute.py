"""The execute stage: run a stored plan through an engine, write results with lineage.

Invariant: every plan item ends as exactly one row in the run's Parquet parts (a completion or
an error row). Finished rows are flushed as atomic parts every `flush_rows` rows or when the
oldest buffered row is `flush_seconds` old (checked after every engine step, so also while the
engine is busy); a re-run with the same run_id skips request ids already in finished parts,
so a crash at any point loses at most the unflushed rows' work and never duplicates a row.
One process at a time may execute a run (a lock file in the run folder).
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from blend import sql
from blend.engines.base import Engine, EngineConfig, EngineOutput, EngineRequest
from blend.engines.supervisor import RestartPolicy, SupervisedEngine
from blend.lineage import LineageEvents, RunLineage, git_revision, model_sha256
from blend.planners import StepBudgets
from blend.results import (
    PartWriter,
    ResultRow,
    done_request_ids,
    remove_temporary_parts,
    run_dir,
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
    engine_start_s: float  # engine (re)starts of this execution
    wall_s: float  # this execution, engine start included
    results_dir: Path
    n_skipped: int  # rows already done by an earlier attempt of the same run
    engine_busy_s: float = 0.0  # time inside the engine's add_request / step calls
    n_engine_restarts: int = 0  # engine failures survived by restarting (this execution)

    @property
    def tokens_per_second(self) -> float:
        return (self.input_tokens + self.output_tokens) / self.wall_s if self.wall_s else 0.0

    @property
    def overhead_s(self) -> float:
        """Wall time of this execution outside the engine's calls and its start (s)."""
        return max(0.0, self.wall_s - self.engine_start_s - self.engine_busy_s)

    @property
    def overhead_fraction(self) -> float:
        """overhead_s as a share of the wall time after the engine started."""
        running_s = self.wall_s - self.engine_start_s
        return self.overhead_s / running_s if running_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ExecuteOptions:
    flush_rows: int = 256  # a part at least every this many finished requests
    flush_seconds: float = 30.0  # ... or when the oldest unwritten row is this old (s)
    chunk_rows: int = 4096  # plan items read from DuckDB at a time
    flow_run_id: str | None = None  # Prefect flow run that executes this (lineage only)
    deployment_name: str | None = None  # Prefect deployment that started it (lineage only)
    plan_budgets: bool = True  # take max_num_seqs / max_num_batched_tokens from the plan
    resume: bool = False  # without run_id: resume the latest unfinished run of the plan
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    openlineage: str = "file"  # file: <store>/lineage/<run_id>.jsonl | client | off
    progress_interval_s: float = 0.2  # least time between progress callbacks (s)


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
    """Run plan `plan_id`; with `run_id` of an earlier attempt (or options.resume), resume it."""
    options = options or ExecuteOptions()
    started = time.perf_counter()
    run = _prepare(store, plan_id, engine_config, run_id, options)
    with _run_lock(run.directory, run.run_id):
        remove_temporary_parts(run.directory)
        done = done_request_ids(run.directory)
        engine = SupervisedEngine(engine_factory, run.engine_config, options.restart_policy)
        try:
            return _execute(store, run, engine, done, options, progress, started)
        finally:
            engine.close()


@dataclass(frozen=True, slots=True)
class _RunSetup:
    """What an execution is about to run, checked before the engine starts."""

    run_id: str
    header: dict
    engine_config: EngineConfig  # with the plan's budgets when it gives them
    tokenizer_sha256: str
    model_sha256: str
    resume: bool  # the run id exists (an earlier execution recorded it)
    directory: Path  # the run's results folder


def _prepare(
    store: Store,
    plan_id: str,
    engine_config: EngineConfig,
    run_id: str | None,
    options: ExecuteOptions,
) -> _RunSetup:
    header = _plan_header(store, plan_id)
    tokenizer_hash = tokenizer_sha256(engine_config.model_dir)
    if tokenizer_hash != header["tokenizer_sha256"]:
        raise ExecuteError(
            f"plan {plan_id} was tokenized with tokenizer {header['tokenizer_sha256'][:12]}, "
            f"but {engine_config.model_dir} has {tokenizer_hash[:12]}: profile and plan the "
            "dataset with this model first"
        )
    if options.plan_budgets:
        engine_config = with_plan_budgets(engine_config, header["params_json"])
    model_hash = model_sha256(engine_config.model_dir)
    if run_id is None and options.resume:
        run_id = latest_unfinished_run(store, plan_id)
    run_id = run_id or new_run_id()
    return _RunSetup(
        run_id=run_id,
        header=header,
        engine_config=engine_config,
        tokenizer_sha256=tokenizer_hash,
        model_sha256=model_hash,
        resume=_check_resumable(store, run_id, plan_id, model_hash),
        directory=run_dir(store.results_dir, header["dataset"], run_id),
    )


def _execute(
    store: Store,
    run: _RunSetup,
    engine: SupervisedEngine,
    done: set[str],
    options: ExecuteOptions,
    progress: ProgressCallback | None,
    started: float,
) -> RunReport:
    """Run the pending plan items; records the run's start and end, emits lineage events."""
    lineage = _lineage(run, engine, options)
    _record_run_start(store, lineage, run.directory, resume=run.resume)
    events = LineageEvents(options.openlineage, store.root, lineage, run.directory)
    events.start()
    loop = _RunLoop(store, run, done, lineage, engine, options, progress)
    status, error = "failed", "interrupted"
    try:
        loop.run()
        status, error = "completed", ""
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        loop.writer.close()
        stats = engine.stats()
        wall_s = time.perf_counter() - started
        execution = {
            "status": status,
            "engine_start_s": engine.start_seconds,
            "wall_s": wall_s,
            "engine_busy_s": engine.busy_seconds,
            "n_engine_restarts": len(engine.failures),
            "prefix_cache_hit_rate": stats.prefix_cache_hit_rate,
        }
        totals = _finish_run(store, run.run_id, run.directory, execution)
        events.finish(status, totals["n_requests"], error)
    return RunReport(
        run_id=run.run_id,
        plan_id=lineage.plan_id,
        dataset=lineage.dataset,
        status=status,
        prefix_cache_hit_rate=stats.prefix_cache_hit_rate,
        engine_start_s=engine.start_seconds,
        wall_s=wall_s,
        results_dir=run.directory,
        n_skipped=len(done),
        engine_busy_s=engine.busy_seconds,
        n_engine_restarts=len(engine.failures),
        **totals,
    )


def _lineage(run: _RunSetup, engine: SupervisedEngine, options: ExecuteOptions) -> RunLineage:
    header = run.header
    return RunLineage(
        run_id=run.run_id,
        plan_id=header["plan_id"],
        dataset=header["dataset"],
        snapshot=header["snapshot"],
        planner=header["planner"],
        model=run.engine_config.model_dir.name,
        model_sha256=run.model_sha256,
        tokenizer_sha256=run.tokenizer_sha256,
        engine=engine.name,
        engine_version=engine.version,
        engine_params_json=_engine_params_json(run.engine_config, engine.max_model_len),
        flow_run_id=options.flow_run_id,
        deployment_name=options.deployment_name,
        git_revision=git_revision(),
    )


def run_id_exists(store: Store, run_id: str) -> bool:
    with store.connect(views=False) as con:
        return bool(fetch_dicts(con, sql.load("execute/run_by_id"), {"run_id": run_id}))


def latest_unfinished_run(store: Store, plan_id: str) -> str | None:
    """The most recently started run of `plan_id` that did not complete, if any."""
    with store.connect(views=False) as con:
        rows = fetch_dicts(con, sql.load("execute/latest_unfinished_run"), {"plan_id": plan_id})
    return rows[0]["run_id"] if rows else None


def with_plan_budgets(config: EngineConfig, params_json: str | None) -> EngineConfig:
    """`config` with the per-step budgets a planner stored in the plan's params, if any."""
    budgets = StepBudgets.from_params(orjson.loads(params_json) if params_json else {})
    return dataclasses.replace(
        config,
        max_num_seqs=budgets.max_num_seqs or config.max_num_seqs,
        max_num_batched_tokens=budgets.max_num_batched_tokens or config.max_num_batched_tokens,
    )


def _plan_header(store: Store, plan_id: str) -> dict:
    with store.connect(views=False) as con:
        rows = fetch_dicts(con, sql.load("execute/plan_header"), {"plan_id": plan_id})
    if not rows:
        raise ExecuteError(f"no plan {plan_id!r} in {store.db_path}: run `blend plan` first")
    return rows[0]


def _check_resumable(store: Store, run_id: str, plan_id: str, model_hash: str) -> bool:
    """Whether `run_id` exists; refuses to resume it with another plan or model."""
    with store.connect(views=False) as con:
        rows = fetch_dicts(con, sql.load("execute/run_by_id"), {"run_id": run_id})
    if not rows:
        return False
    run = rows[0]
    if run["plan_id"] != plan_id:
        raise ExecuteError(
            f"run {run_id} belongs to plan {run['plan_id']!r}, not {plan_id!r}: resume it with "
            f"--plan-id {run['plan_id']}, or leave out the run id to start a new run"
        )
    if run["model_sha256"] != model_hash:
        raise ExecuteError(
            f"run {run_id} was started with model {run['model']!r} "
            f"(sha256 {run['model_sha256'][:12]}), but this model's files hash to "
            f"{model_hash[:12]}: resume it with the same model, or start a new run"
        )
    return True


@contextmanager
def _run_lock(directory: Path, run_id: str) -> Iterator[None]:
    """Hold `<run folder>/.lock` so that two processes never execute the same run."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExecuteError(
                f"run {run_id} is being executed by another process (lock {directory / '.lock'})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock; a killed process releases it too


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


class _PendingRequests:
    """Plan items not yet done, read from DuckDB chunk by chunk in plan order."""

    def __init__(self, store: Store, header: dict, done: set[str], chunk_rows: int) -> None:
        self._store, self._header, self._done, self._chunk_rows = store, header, done, chunk_rows
        self.meta: dict[str, _RequestMeta] = {}  # requests handed out and not yet finished

    def iterate(self) -> Iterator[EngineRequest]:
        params = {
            k: self._header[k] for k in ("plan_id", "dataset", "snapshot", "tokenizer_sha256")
        }
        for seq_start in range(0, self._header["n_requests"], self._chunk_rows):
            with self._store.connect(views=False) as con:
                chunk = fetch_arrow(
                    con,
                    sql.load("execute/plan_chunk"),
                    {**params, "seq_start": seq_start, "seq_end": seq_start + self._chunk_rows},
                ).to_pylist()
            for row in chunk:
                if row["request_id"] in self._done:
                    continue
                self.meta[row["request_id"]] = _RequestMeta(
                    seq=row["seq"],
                    prompt_sha256=row["prompt_sha256"],
                    sampling_json=row["sampling_json"],
                )
                yield EngineRequest(
                    request_id=row["request_id"],
                    prompt_token_ids=row["token_ids"],
                    sampling=orjson.loads(row["sampling_json"]),
                )


class _RunLoop:
    """Feeds pending plan items to the engine and hands finished rows to the part writer."""

    def __init__(
        self,
        store: Store,
        run: _RunSetup,
        done: set[str],
        lineage: RunLineage,
        engine: SupervisedEngine,
        options: ExecuteOptions,
        progress: ProgressCallback | None,
    ) -> None:
        header = run.header
        self._requests = _PendingRequests(store, header, done, options.chunk_rows)
        self._lineage = lineage
        self._engine = engine
        self._options = options
        self._progress = progress
        self._n_done_before = len(done)
        self._total = int(header["n_requests"])
        self.writer = PartWriter(
            run.directory,
            lineage.as_metadata(),
            flush_rows=options.flush_rows,
            flush_seconds=options.flush_seconds,
            start_index=len(done),
            part_metadata=self._engine_params,
        )

    def run(self) -> None:
        last_report = 0.0
        for finished in self._engine.generate(self._requests.iterate()):
            if finished:
                self.writer.add(self._row(output) for output in finished)
                now = time.monotonic()
                if now - last_report >= self._options.progress_interval_s:
                    self._report()
                    last_report = now
            self.writer.flush_if_due()
        self._report()

    def _report(self) -> None:
        if self._progress is not None:
            done = self._n_done_before + self.writer.rows_added
            self._progress(done, self._total, self.writer.output_tokens)

    def _row(self, output: EngineOutput) -> ResultRow:
        meta = self._requests.meta.pop(output.request_id)
        lineage = self._lineage
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

    def _engine_params(self) -> dict[str, str]:
        """Per-part metadata: the budgets now (they shrink after engine failures)."""
        params = _engine_params_json(self._engine.config, self._engine.max_model_len)
        return {"blend.engine_params_json": params}


def _record_run_start(store: Store, lineage: RunLineage, directory: Path, *, resume: bool) -> None:
    with store.connect(views=False) as con:
        if resume:
            con.execute(
                sql.load("execute/resume_run"),
                {
                    "run_id": lineage.run_id,
                    "flow_run_id": lineage.flow_run_id,
                    "deployment_name": lineage.deployment_name,
                },
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
                "deployment_name": lineage.deployment_name,
                "engine": lineage.engine,
                "engine_version": lineage.engine_version,
                "model": lineage.model,
                "model_sha256": lineage.model_sha256,
                "params_json": lineage.engine_params_json,
                "results_uri": str(directory),
                "git_revision": lineage.git_revision,
            },
        )


def _finish_run(
    store: Store, run_id: str, directory: Path, execution: dict[str, object]
) -> dict[str, int]:
    """Record the end of this execution and the run's totals (read from its parts)."""
    totals = {
        "n_requests": 0,
        "n_errors": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_tokens": 0,
    }
    with store.connect(views=False) as con:
        if any(directory.glob("part-*.parquet")):
            row = fetch_dicts(
                con, sql.load("results/run_totals"), {"glob": str(directory / "part-*.parquet")}
            )[0]
            totals = {k: int(row[k]) for k in totals}
        con.execute(sql.load("execute/finish_run"), {"run_id": run_id, **execution, **totals})
    return totals
