"""The execute stage: run a stored plan through an engine, write results with lineage.

Invariant: every plan item ends as exactly one row in the run's Parquet parts (a completion or
an error row). Finished rows are flushed as atomic parts every `flush_rows` rows or when the
oldest buffered row is `flush_seconds` old (checked after every engine step, so also while the
engine is busy); a re-run with the same run_id skips request ids already in finished parts,
so a crash at any point loses at most the unflushed rows' work and never duplicates a row.
One process at a time may execute a run (a lock file in the run folder, blend/runs.py); the
run's row in `runs` is written when an execution starts and ends (blend/run_records.py).

Which request enters the engine next is an admission policy's choice (blend/admission), made
after every step from the engine's state: the plan's warm-up sample first; then, for plans
that ask for it, the rest re-planned with the lengths the warm-up measured (blend/replan.py,
stored before anything of it runs); then the plan's order fed in order, or BlendServe's
online dual scan.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from blend.admission.base import AdmissionKind, AdmissionPolicy
from blend.admission.dual_scan import DualScanOptions, ScanSequence
from blend.admission.factory import admission_policy
from blend.admission.warmup import WarmupOutcome, WarmupThenReplan, adopt_running
from blend.admission_feed import AdmissionFeed
from blend.cost import CostModel, resolve_cost
from blend.engine_settings import EngineSettings
from blend.engines.base import Engine, EngineConfig, EngineOutput, RestartEngine
from blend.engines.supervisor import RestartPolicy, SupervisedEngine
from blend.lineage import LineageEvents, RunLineage, git_revision, model_sha256
from blend.names import NameKind, validate_name
from blend.plan_items import (
    PlanHeader,
    PlanItems,
    PlanNotFoundError,
    RequestLoader,
    read_plan_header,
    shared_across_gaps,
)
from blend.process_lock import LockFileError
from blend.replan import (
    ReplanContext,
    Revision,
    load_revision,
    replan_after_warmup,
    stored_settings,
)
from blend.results import (
    PartWriter,
    ResultRow,
    done_request_ids,
    finished_parts,
    remove_temporary_parts,
    run_dir,
)
from blend.run_records import (
    GroupEstimate,
    RunRecordError,
    check_resumable,
    estimate_accuracy,
    latest_unfinished_run,
    new_run_id,
    record_run_finish,
    record_run_start,
)
from blend.runs import RunBusyError, acquire_run_lock, mark_dead_runs
from blend.store import Store, quarantine_unreadable, run_parts_glob
from blend.tokenize import tokenizer_sha256

ProgressCallback = Callable[[int, int, int], None]  # (rows done, rows total, output tokens)
EngineFactory = Callable[[EngineConfig], Engine]

__all__ = [
    "ExecuteError",
    "ExecuteOptions",
    "RunReport",
    "execute_plan",
    "latest_unfinished_run",
    "new_run_id",
]


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
    settings: EngineSettings | None = None  # what the engine ran with (its last start)
    replan: dict | None = None  # what the re-plan after the warm-up measured and chose
    # estimated vs actual output tokens of its largest prefix groups (completed runs)
    estimates: list[GroupEstimate] = field(default_factory=list)

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
    plan_budgets: bool = True  # run the engine with the plan's settings (else the config's)
    resume: bool = False  # without run_id: resume the latest unfinished run of the plan
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    openlineage: str = "file"  # file: <store>/lineage/<run_id>.jsonl | client | off
    progress_interval_s: float = 0.2  # least time between progress callbacks (s)
    warmup_done_fraction: float = 0.9  # re-plan once this share of the warm-up finished
    on_replan: Callable[[dict], None] | None = None  # told the re-plan's report once stored
    # more than 1: that many engines as Ray actors, one share of the plan each (blend/scale)
    engines: int = 1
    ray_address: str | None = None  # Ray cluster to use (default: $RAY_ADDRESS, else local)
    results_uri: str | None = None  # the store's results folder as engines reach it (a URL)


def default_engine_factory(config: EngineConfig) -> Engine:
    from blend.engines.selection import make_engine

    return make_engine(config)  # vLLM, or hetegen for a model larger than the GPU


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
    validate_name(plan_id, NameKind.PLAN_ID, "execute_plan(plan_id=...)")
    if run_id is not None:
        validate_name(run_id, NameKind.RUN_ID, "execute_plan(run_id=...)")
    options = options or ExecuteOptions()
    if options.engines < 1:
        raise ExecuteError(f"engines must be >= 1, got {options.engines}")
    if options.engines > 1:
        from blend.scale.ray_fleet import execute_on_ray

        return execute_on_ray(
            store,
            plan_id,
            engine_config,
            run_id=run_id,
            options=options,
            engine_factory=engine_factory,
            progress=progress,
        )
    started = time.perf_counter()
    run = prepare_run(store, plan_id, engine_config, run_id, options)
    with held_run_lock(run.directory, run.run_id):
        remove_temporary_parts(run.directory)
        quarantine_unreadable(store, finished_parts(run.directory))  # their rows run again
        done = done_request_ids(run.directory)
        config = _with_stored_settings(store, run)
        engine = SupervisedEngine(engine_factory, config, options.restart_policy)
        try:
            return _execute(store, run, engine, done, options, progress, started)
        finally:
            engine.close()


@dataclass(frozen=True, slots=True)
class RunSetup:
    """What an execution is about to run, checked before the engine starts."""

    run_id: str
    header: PlanHeader
    engine_config: EngineConfig  # with the plan's settings when it names them
    tokenizer_sha256: str
    model_sha256: str
    resume: bool  # the run id exists (an earlier execution recorded it)
    directory: Path  # the run's results folder


def prepare_run(
    store: Store,
    plan_id: str,
    engine_config: EngineConfig,
    run_id: str | None,
    options: ExecuteOptions,
) -> RunSetup:
    header = _plan_header(store, plan_id)
    tokenizer_hash = tokenizer_sha256(engine_config.model_dir)
    if tokenizer_hash != header.tokenizer_sha256:
        raise ExecuteError(
            f"plan {plan_id} was tokenized with tokenizer {header.tokenizer_sha256[:12]}, "
            f"but {engine_config.model_dir} has {tokenizer_hash[:12]}: profile and plan the "
            "dataset with this model first"
        )
    if options.plan_budgets:
        engine_config = with_plan_settings(engine_config, header)
    model_hash = model_sha256(engine_config.model_dir)
    if run_id is None and options.resume:
        mark_dead_runs(store)  # a killed execution's row says `running` until found dead
        run_id = latest_unfinished_run(store, plan_id)
    run_id = run_id or new_run_id()
    try:
        resume = check_resumable(store, run_id, plan_id, model_hash)
    except RunRecordError as exc:
        raise ExecuteError(str(exc)) from None
    return RunSetup(
        run_id=run_id,
        header=header,
        engine_config=engine_config,
        tokenizer_sha256=tokenizer_hash,
        model_sha256=model_hash,
        resume=resume,
        directory=run_dir(store.results_dir, header.dataset, run_id),
    )


def with_plan_settings(config: EngineConfig, header: PlanHeader) -> EngineConfig:
    """`config` with the engine settings the plan names (plans made before settings were a
    part of plans name none)."""
    return dataclasses.replace(
        config,
        max_num_seqs=header.max_num_seqs or config.max_num_seqs,
        max_num_batched_tokens=header.max_num_batched_tokens or config.max_num_batched_tokens,
    )


def _with_stored_settings(store: Store, run: RunSetup) -> EngineConfig:
    """A resumed run that restarted its engine with searched settings starts with them."""
    chosen = stored_settings(store, run.run_id) if run.resume else None
    if chosen is None:
        return run.engine_config
    return dataclasses.replace(
        run.engine_config,
        max_num_batched_tokens=chosen.max_num_batched_tokens,
        max_num_seqs=chosen.max_num_seqs,
    )


def _execute(
    store: Store,
    run: RunSetup,
    engine: SupervisedEngine,
    done: set[str],
    options: ExecuteOptions,
    progress: ProgressCallback | None,
    started: float,
) -> RunReport:
    """Run the pending plan items; records the run's start and end, emits lineage events."""
    lineage = _lineage(run, engine, options)
    record_run_start(store, lineage, run.directory, resume=run.resume)
    events = LineageEvents(options.openlineage, store.root, lineage, run.directory)
    events.start()
    loop = _RunLoop(store, run, done, lineage, engine, options, progress)
    status, error = "failed", "interrupted"
    try:
        try:
            loop.run()
        finally:
            loop.writer.close()  # the last part; a failed part write (disk full) raises here
        status, error = "completed", ""
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
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
        totals = record_run_finish(store, run.run_id, run.directory, execution)
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
        settings=engine.settings,
        replan=loop.revision.report if loop.revision is not None else None,
        estimates=estimate_accuracy(store, run.run_id),
        **totals,
    )


def _lineage(run: RunSetup, engine: SupervisedEngine, options: ExecuteOptions) -> RunLineage:
    return run_lineage(run, engine.name, engine.version, _engine_params_json(engine), options)


def run_lineage(
    run: RunSetup,
    engine: str,
    engine_version: str,
    engine_params_json: str,
    options: ExecuteOptions,
) -> RunLineage:
    """The lineage of `run` executed by `engine` (the one or many engines that run it)."""
    header = run.header
    return RunLineage(
        run_id=run.run_id,
        plan_id=header.plan_id,
        dataset=header.dataset,
        snapshot=header.snapshot,
        planner=header.planner,
        model=run.engine_config.model_dir.name,
        model_sha256=run.model_sha256,
        tokenizer_sha256=run.tokenizer_sha256,
        engine=engine,
        engine_version=engine_version,
        engine_params_json=engine_params_json,
        flow_run_id=options.flow_run_id,
        deployment_name=options.deployment_name,
        git_revision=git_revision(),
    )


def _plan_header(store: Store, plan_id: str) -> PlanHeader:
    try:
        return read_plan_header(store, plan_id)
    except PlanNotFoundError as exc:
        raise ExecuteError(str(exc)) from None


@contextmanager
def held_run_lock(directory: Path, run_id: str) -> Iterator[None]:
    """Hold the run's lock (blend/runs.py) so that two processes never execute the same run."""
    try:
        fd = acquire_run_lock(directory, run_id)
    except (RunBusyError, LockFileError) as exc:
        raise ExecuteError(str(exc)) from None
    try:
        yield
    finally:
        os.close(fd)  # closing releases the lock; a killed process releases it too


def _engine_params_json(engine: SupervisedEngine) -> str:
    config = engine.config
    params = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in {
            f: getattr(config, f) for f in config.__dataclass_fields__ if f != "model_dir"
        }.items()
    }
    # what the engine runs with (vLLM's defaults filled in)
    params["max_model_len"] = engine.max_model_len
    params["max_num_seqs"] = engine.settings.max_num_seqs
    params["max_num_batched_tokens"] = engine.settings.max_num_batched_tokens
    params["chunked_prefill"] = engine.settings.chunked_prefill
    params.update(engine.params)  # the engine's own (hetegen: its placement)
    return orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()


class _RunLoop:
    """Feeds pending plan items to the engine and hands finished rows to the part writer."""

    def __init__(
        self,
        store: Store,
        run: RunSetup,
        done: set[str],
        lineage: RunLineage,
        engine: SupervisedEngine,
        options: ExecuteOptions,
        progress: ProgressCallback | None,
    ) -> None:
        self._store, self._run = store, run
        self._items = PlanItems.load(store, run.header.plan_id)
        self._loader = RequestLoader(store, run.header, options.chunk_rows)
        self._pending = np.ones(len(self._items), dtype=bool)
        self._pending[self._items.seqs_of(done)] = False
        self._lineage = lineage
        self._engine = engine
        self._options = options
        self._progress = progress
        self._n_done_before = len(done)
        self._total = int(run.header.n_requests)
        self.revision: Revision | None = None
        self._restart_asked = False
        self.writer = PartWriter(
            run.directory,
            lineage.as_metadata(),
            flush_rows=options.flush_rows,
            flush_seconds=options.flush_seconds,
            start_index=len(done),
            part_metadata=lambda: {"blend.engine_params_json": _engine_params_json(engine)},
        )

    def run(self) -> None:
        last_report = 0.0
        feed = AdmissionFeed(self._policy(), self._loader)
        for finished in self._engine.generate(feed):
            if finished:
                self.writer.add(self._row(output) for output in finished)
                now = time.monotonic()
                if now - last_report >= self._options.progress_interval_s:
                    self._report()
                    last_report = now
            self.writer.flush_if_due()
        self._report()

    # -- admission ---------------------------------------------------------------------------

    def _policy(self) -> AdmissionPolicy:
        """The warm-up, then the revised order (or the stored one), else the plan order."""
        header, items = self._run.header, self._items
        warmup = np.flatnonzero(self._pending & items.is_warmup)
        rest = np.flatnonzero(self._pending & ~items.is_warmup)
        self.revision = load_revision(self._replan_context())
        if self.revision is not None:
            after = self._revision_policy(self.revision)
            return self._warmup_then(warmup, len(rest), lambda _: after, done_fraction=0.0)
        if header.n_warmup and (header.replan_after_warmup or header.search_settings):
            return self._warmup_then(warmup, len(rest), self._replan)
        order = np.flatnonzero(self._pending)
        return self._order_policy(AdmissionKind(header.admission), order)

    def _warmup_then(
        self,
        warmup: np.ndarray,
        n_rest: int,
        replan: Callable[[WarmupOutcome], AdmissionPolicy],
        done_fraction: float | None = None,
    ) -> AdmissionPolicy:
        return WarmupThenReplan(
            warmup.tolist(),
            replan,
            n_rest=n_rest,
            window=2 * self._engine.settings.max_num_seqs,
            done_fraction=(
                self._options.warmup_done_fraction if done_fraction is None else done_fraction
            ),
        )

    def _replan(self, outcome: WarmupOutcome) -> AdmissionPolicy:
        """Called once the warm-up has run: re-plan and store, maybe restart the engine."""
        if self.revision is None:
            self.writer.sync()  # the warm-up's rows are read back from the parts
            pending = self._pending.copy()
            pending[self._items.seqs_of(set(self._loader.meta))] = False  # still running
            self.revision = replan_after_warmup(self._replan_context(), pending, outcome.running)
            if self._options.on_replan is not None:
                self._options.on_replan(self.revision.report)
        settings = self.revision.settings
        if settings is not None and not self._restart_asked:
            self._restart_asked = True
            config = dataclasses.replace(
                self._engine.config,
                max_num_batched_tokens=settings.max_num_batched_tokens,
                max_num_seqs=settings.max_num_seqs,
            )
            raise RestartEngine(config, f"settings searched after the warm-up: {settings.label()}")
        policy = self._revision_policy(self.revision)
        # those the revision estimated that still run on this engine (a restart ran them again)
        adopted = {s: e for s, e in self.revision.adopted.items() if s in outcome.running}
        adopt_running(policy, adopted, {s: float(self._items.prompt_tokens[s]) for s in adopted})
        return policy

    def _revision_policy(self, revision: Revision) -> AdmissionPolicy:
        kept = np.flatnonzero(self._pending[revision.seqs])  # done in an earlier attempt: out
        seqs = revision.seqs[kept]
        sequence = ScanSequence(
            index=seqs,
            prompt_tokens=self._items.prompt_tokens[seqs],
            shared_prev=shared_across_gaps(revision.shared_prev, kept),
            output_tokens=revision.est_output_tokens[kept],
            output_spread=revision.est_spread[kept],
        )
        return admission_policy(
            revision.admission,
            sequence,
            self._cost(),
            self._engine.settings,
            DualScanOptions(pace=revision.pace),
        )

    def _order_policy(self, kind: AdmissionKind, seqs: np.ndarray) -> AdmissionPolicy:
        items = self._items
        sequence = ScanSequence(
            index=seqs,
            prompt_tokens=items.prompt_tokens[seqs],
            shared_prev=items.filtered_shared_prev(seqs),
            output_tokens=items.est_output_tokens[seqs],
            output_spread=items.est_spread[seqs],
        )
        return admission_policy(kind, sequence, self._cost(), self._engine.settings)

    def _cost(self) -> CostModel:
        header = self._run.header
        return resolve_cost(header.model_spec, header.hardware, self._run.engine_config.model_dir)

    def _replan_context(self) -> ReplanContext:
        state = self._engine.state()
        return ReplanContext(
            store=self._store,
            header=self._run.header,
            items=self._items,
            run_id=self._run.run_id,
            parts_glob=run_parts_glob(self._run.directory),
            model_sha256=self._run.model_sha256,
            model_dir=self._run.engine_config.model_dir,
            running=self._engine.settings,
            kv_capacity_tokens=state.kv_blocks_total * state.block_size,
            block_size=state.block_size,
            engine_start_s=self._engine.start_seconds,
        )

    # -- results -----------------------------------------------------------------------------

    def _report(self) -> None:
        if self._progress is not None:
            done = self._n_done_before + self.writer.rows_added
            self._progress(done, self._total, self.writer.output_tokens)

    def _row(self, output: EngineOutput) -> ResultRow:
        meta = self._loader.finish(output.request_id)
        self._pending[meta.seq] = False
        return ResultRow.of(
            self._lineage,
            output,
            seq=meta.seq,
            prompt_sha256=meta.prompt_sha256,
            sampling_json=meta.sampling_json,
        )
