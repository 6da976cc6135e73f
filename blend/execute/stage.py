"""The execute stage: run a stored plan through an engine, write results with lineage.

Invariant: every plan item ends as exactly one row in the run's Parquet parts (a completion or
an error row). Finished rows are flushed as atomic parts every `flush_rows` rows or when the
oldest buffered row is `flush_seconds` old (checked after every engine step, so also while the
engine is busy); a re-run with the same run_id skips request ids already in finished parts,
so a crash at any point loses at most the unflushed rows' work and never duplicates a row.
One process at a time may execute a run (a lock file in the run folder, blend/store/runs.py); the
run's row in `runs` is written when an execution starts and ends (blend/store/run_records.py).

Which request enters the engine next is an admission policy's choice (blend/admission), made
after every step from the engine's state: the plan's warm-up sample first; then, for plans
that ask for it, the rest re-planned with the lengths the warm-up measured (blend/execute/replan.py,
stored before anything of it runs); then the plan's order fed in order, or BlendServe's
online dual scan.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from blend.admission.base import AdmissionPolicy
from blend.admission.dual_scan import DualScanOptions, ScanSequence
from blend.admission.factory import admission_policy
from blend.admission.feed import AdmissionFeed
from blend.admission.warmup import (
    RestOfRun,
    WarmupOutcome,
    WarmupThenRest,
    adopt_running,
    hand_over_if_ended,
)
from blend.cost.model import CostModel
from blend.cost.resolve import resolve_cost
from blend.engines.base import Engine, EngineConfig, EngineOutput
from blend.engines.settings import EngineSettings
from blend.engines.supervisor import SupervisedEngine
from blend.execute.replan import (
    ReplanContext,
    Revision,
    load_revision,
    replan_after_warmup,
    stored_settings,
)
from blend.execute.requests import StagedRequests
from blend.execute.setup import (
    EngineFactory,
    ExecuteError,
    ExecuteOptions,
    ProgressCallback,
    RunReport,
    RunSetup,
    held_run_lock,
    prepare_run,
    run_lineage,
)
from blend.plan.items import PlanItems, shared_across_gaps
from blend.planners.base import AdmissionKind
from blend.store.database import Store, quarantine_unreadable, run_parts_glob
from blend.store.lineage import LineageEvents, RunLineage
from blend.store.names import NameKind, validate_name
from blend.store.results import (
    PartWriter,
    ResultRow,
    finished_parts,
    remove_temporary_parts,
)
from blend.store.run_records import (
    Execution,
    estimate_accuracy,
    latest_unfinished_run,
    new_run_id,
    record_run_finish,
    record_run_start,
)

__all__ = [
    "ExecuteError",
    "ExecuteOptions",
    "ProgressCallback",
    "RunReport",
    "execute_plan",
    "latest_unfinished_run",
    "new_run_id",
]


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
        from blend.execute.ray_fleet import execute_on_ray

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
        done = _done_request_ids(run.directory)
        config = _with_stored_settings(store, run)
        engine = SupervisedEngine(engine_factory, config, options.restart_policy)
        try:
            return _execute(store, run, engine, done, options, progress, started)
        finally:
            engine.close()


def _done_request_ids(directory: Path) -> pa.StringArray:
    """Request ids that already have a row in the run's finished parts (for resume), as one
    Arrow array: a resumed run of millions of rows holds no Python string of them."""
    ids = [pq.read_table(p, columns=["request_id"]).column(0) for p in finished_parts(directory)]
    return pa.chunked_array(ids, pa.string()).combine_chunks()


def _with_stored_settings(store: Store, run: RunSetup) -> EngineConfig:
    """A resumed run that restarted its engine with searched settings starts with them."""
    chosen = stored_settings(store, run.run_id) if run.resume else None
    return run.engine_config if chosen is None else run.engine_config.with_settings(chosen)


def _execute(
    store: Store,
    run: RunSetup,
    engine: SupervisedEngine,
    done: pa.StringArray,
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
            loop.requests.close()
            loop.writer.close()  # the last part; a failed part write (disk full) raises here
        status, error = "completed", ""
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        stats = engine.stats()
        wall_s = time.perf_counter() - started
        execution = Execution(
            status=status,
            engine_start_s=engine.start_seconds,
            wall_s=wall_s,
            engine_busy_s=engine.busy_seconds,
            n_engine_restarts=len(engine.failures),
            engine_prefix_cache_hit_rate=stats.prefix_cache_hit_rate,
        )
        totals = record_run_finish(store, run.run_id, run.directory, execution)
        events.finish(status, totals.n_requests, error)
    return RunReport(
        run_id=run.run_id,
        plan_id=lineage.plan_id,
        dataset=lineage.dataset,
        status=status,
        totals=totals,
        engine_prefix_cache_hit_rate=stats.prefix_cache_hit_rate,
        block_size=loop.block_size,
        engine_start_s=engine.start_seconds,
        wall_s=wall_s,
        results_dir=run.directory,
        n_skipped=len(done),
        engine_busy_s=engine.busy_seconds,
        n_engine_restarts=len(engine.failures),
        settings=engine.settings,
        replan=loop.revision.report if loop.revision is not None else None,
        estimates=estimate_accuracy(store, run.run_id, run.directory),
    )


def _lineage(run: RunSetup, engine: SupervisedEngine, options: ExecuteOptions) -> RunLineage:
    return run_lineage(run, engine.name, engine.version, engine.params_json(), options)


class _RunLoop:
    """Feeds pending plan items to the engine and hands finished rows to the part writer."""

    def __init__(
        self,
        store: Store,
        run: RunSetup,
        done: pa.StringArray,
        lineage: RunLineage,
        engine: SupervisedEngine,
        options: ExecuteOptions,
        progress: ProgressCallback | None,
    ) -> None:
        self._store, self._run = store, run
        self._items = PlanItems.load(store, run.header.plan_id)
        self.requests = StagedRequests(store, run.header, run.run_id, options.chunk_rows)
        self._pending = ~pc.is_in(self._items.request_id, value_set=done).to_numpy(
            zero_copy_only=False
        )
        self._lineage = lineage
        self._engine = engine
        self._options = options
        self._progress = progress
        self._n_done_before = len(done)
        self._total = int(run.header.n_requests)
        self.revision: Revision | None = None
        self.block_size: int | None = None  # the engine's KV block (tokens), once it runs
        self._last_report = 0.0  # time.monotonic() of the last progress callback
        self.writer = PartWriter(
            run.directory,
            lineage.as_metadata(),
            flush_rows=options.flush_rows,
            flush_seconds=options.flush_seconds,
            start_index=len(done),
            part_metadata=lambda: {"blend.engine_params_json": engine.params_json()},
        )

    def run(self) -> None:
        """The run's phases, owned here: the warm-up (when the plan has one), then, when the
        engine loop yields at its end, the re-plan, the settings (a restart when the search
        says it pays) and the hand-over to the rest; or the plan order fed at once."""
        policy, rest_of_run = self._policy()
        feed = AdmissionFeed(policy, self.requests)
        for finished in self._engine.generate(feed):
            self.writer.write_step(finished, self._row, self._report_now_and_then)
            if feed.paused:
                assert rest_of_run is not None, "only a warm-up pauses the feed"
                hand_over_if_ended(policy, rest_of_run)
        self._report()

    def _report_now_and_then(self) -> None:
        """Progress, at most every progress_interval_s."""
        now = time.monotonic()
        if now - self._last_report >= self._options.progress_interval_s:
            self._report()
            self._last_report = now

    # -- admission ---------------------------------------------------------------------------

    def _policy(self) -> tuple[AdmissionPolicy, RestOfRun | None]:
        """The warm-up and what follows it (the revised order, or the stored one), else the
        plan order."""
        header, items = self._run.header, self._items
        warmup = np.flatnonzero(self._pending & items.is_warmup)
        rest = np.flatnonzero(self._pending & ~items.is_warmup)
        self.revision = load_revision(self._replan_context())
        if self.revision is not None:  # resumed after its re-plan: the stored revision
            after = self._revision_policy(self.revision, self._engine.settings)
            return self._warmup(warmup, len(rest), done_fraction=0.0), lambda _: after
        if header.n_warmup and (header.replan_after_warmup or header.search_settings):
            return self._warmup(warmup, len(rest)), self._replan
        order = np.flatnonzero(self._pending)
        return self._order_policy(header.admission, order), None

    def _warmup(
        self, warmup: np.ndarray, n_rest: int, done_fraction: float | None = None
    ) -> WarmupThenRest:
        return WarmupThenRest(
            warmup.tolist(),
            n_rest=n_rest,
            window=2 * self._engine.settings.max_num_seqs,
            done_fraction=(
                self._options.warmup_done_fraction if done_fraction is None else done_fraction
            ),
        )

    def _replan(self, outcome: WarmupOutcome) -> AdmissionPolicy:
        """The warm-up has run: re-plan and store, restart the engine when the searched
        settings pay for it, and return the rest's policy."""
        self.writer.sync()  # the warm-up's rows are read back from the parts
        pending = self._pending.copy()
        pending[[meta.seq for meta in self.requests.meta.values()]] = False  # still running
        self.revision = replan_after_warmup(self._replan_context(), pending, outcome.running)
        if self._options.on_replan is not None:
            self._options.on_replan(self.revision.report)
        settings, running = self.revision.settings, self._engine.settings
        if settings is not None:
            reason = f"settings searched after the warm-up: {settings.label()}"
            self._engine.restart_with(self._engine.config.with_settings(settings), reason)
            running = dataclasses.replace(settings, chunked_prefill=running.chunked_prefill)
        policy = self._revision_policy(self.revision, running)
        # the warm-up requests still running (a restart runs them again, first)
        adopted = {s: e for s, e in self.revision.adopted.items() if s in outcome.running}
        adopt_running(policy, adopted, {s: float(self._items.prompt_tokens[s]) for s in adopted})
        return policy

    def _revision_policy(self, revision: Revision, settings: EngineSettings) -> AdmissionPolicy:
        kept = np.flatnonzero(self._pending[revision.seqs])  # done in an earlier attempt: out
        seqs = revision.seqs[kept]
        sequence = ScanSequence(
            index=seqs,
            prompt_tokens=self._items.prompt_tokens_at(seqs),
            shared_prev=shared_across_gaps(revision.shared_prev, kept),
            output_tokens=revision.est_output_tokens[kept],
            output_spread=revision.est_spread[kept],
        )
        return admission_policy(
            revision.admission,
            sequence,
            self._cost(),
            settings,
            DualScanOptions(pace=revision.pace),
        )

    def _order_policy(self, kind: AdmissionKind, seqs: np.ndarray) -> AdmissionPolicy:
        items = self._items
        sequence = ScanSequence(
            index=seqs,
            prompt_tokens=items.prompt_tokens_at(seqs),
            shared_prev=items.filtered_shared_prev(seqs),
            output_tokens=items.est_output_tokens[seqs],
            output_spread=items.est_spread[seqs],
        )
        return admission_policy(kind, sequence, self._cost(), self._engine.settings)

    def _cost(self) -> CostModel:
        header = self._run.header
        config = self._run.engine_config
        return resolve_cost(
            header.model_spec,
            header.hardware,
            config.model_dir,
            config.tensor_parallel_size,
            config.gpu_memory_utilization,
        )

    def _replan_context(self) -> ReplanContext:
        state = self._engine.state()
        self.block_size = state.block_size
        return ReplanContext(
            store=self._store,
            header=self._run.header,
            items=self._items,
            run_id=self._run.run_id,
            parts_glob=run_parts_glob(self._run.directory),
            model_sha256=self._run.model_sha256,
            model_dir=self._run.engine_config.model_dir,
            tensor_parallel_size=self._run.engine_config.tensor_parallel_size,
            gpu_memory_utilization=self._run.engine_config.gpu_memory_utilization,
            max_model_len=self._engine.max_model_len,
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
        meta = self.requests.finish(output.request_id)
        self._pending[meta.seq] = False
        return ResultRow.of(
            self._lineage,
            output,
            seq=meta.seq,
            prompt_sha256=meta.prompt_sha256,
            sampling_json=meta.sampling_json,
        )
