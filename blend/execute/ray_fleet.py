"""The driver of a multi-engine run: one plan, K engines as Ray actors, one run.

Invariant (exactly once): only this process (the driver) touches the DuckDB store and the run
lock. It splits the pending plan items into K disjoint shares and hands each to one engine
actor (blend/scale/worker.py) with everything it needs (token ids, sampling, lineage). An
actor writes atomic parts named after its tag into the run folder. A share is handed to a
second actor only after Ray reported its first one dead (ActorDiedError: the worker process
is gone, so it writes nothing more), and then only its positions without a row in a complete
part; so each request gets one row. A share an actor finished is never handed again.

Warm-up and re-plan (blend/execute/replan.py) are single-engine steps: a multi-engine execution runs
the plan's stored order with the plan's admission policy and settings, warm-up items included
in their plan positions, and never re-plans (docs/ray.md says why).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blend.admission.dual_scan import ScanSequence
from blend.cost.model import CostModel
from blend.cost.resolve import resolve_cost
from blend.engines.base import EngineConfig
from blend.engines.supervisor import EngineFactory, EngineFailedError
from blend.execute.setup import (
    ExecuteError,
    ExecuteOptions,
    ProgressCallback,
    RunReport,
    RunSetup,
    held_run_lock,
    prepare_run,
    run_lineage,
)
from blend.plan.items import PlanItems, RequestLoader, shared_across_gaps
from blend.scale.parts import RunFolder, run_folder_uri
from blend.scale.ray_cluster import connect_ray
from blend.scale.split import DEFAULT_SPLIT, EngineSplit, check_split
from blend.scale.worker import (
    EngineInfo,
    EngineWorker,
    RunContext,
    Share,
    ShareReport,
    ShareRequest,
)
from blend.store.database import Store, quarantine_unreadable
from blend.store.lineage import LineageEvents, RunLineage
from blend.store.results import finished_parts, remove_temporary_parts
from blend.store.run_records import (
    Execution,
    estimate_accuracy,
    record_run_finish,
    record_run_start,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FleetLimits:
    """How the fleet asks Ray for engines and how many engine deaths a run survives."""

    cpus_per_engine: float = 1.0  # Ray CPUs each engine actor holds
    gpus_per_engine: float | None = None  # None: 1 when the cluster has GPUs, else 0
    max_engine_deaths: int = 4  # dead actors replaced per execution before the run fails


def execute_on_ray(
    store: Store,
    plan_id: str,
    engine_config: EngineConfig,
    *,
    run_id: str | None,
    options: ExecuteOptions,
    engine_factory: EngineFactory,
    progress: ProgressCallback | None = None,
    split: EngineSplit = DEFAULT_SPLIT,
    limits: FleetLimits | None = None,
) -> RunReport:
    """Run (or resume) plan `plan_id` with `options.engines` engines on Ray."""
    started = time.perf_counter()
    limits = limits or FleetLimits()
    run = prepare_run(store, plan_id, engine_config, run_id, options)
    with held_run_lock(run.directory, run.run_id):
        remove_temporary_parts(run.directory)
        # the local run folder (a remote results_uri's parts are not checked): their rows run again
        quarantine_unreadable(store, finished_parts(run.directory))
        folder = RunFolder(run_folder_uri(options.results_uri, store.results_dir, run.directory))
        done = folder.done_request_ids()
        shares, cost = _shares(store, run, done, options, split)
        fleet = _Fleet(run, folder, cost, options, engine_factory, limits, progress)
        try:
            return fleet.execute(store, shares, started, n_skipped=len(done))
        finally:
            fleet.stop()


def _shares(
    store: Store,
    run: RunSetup,
    done: set[str],
    options: ExecuteOptions,
    split: EngineSplit,
) -> tuple[list[Share], CostModel]:
    """The pending plan items in plan order, cut into one share per engine."""
    header = run.header
    items = PlanItems.load(store, header.plan_id)
    pending = np.ones(len(items), dtype=bool)
    pending[items.seqs_of(done)] = False
    order = np.flatnonzero(pending)
    sequence = ScanSequence(
        index=order,
        prompt_tokens=items.prompt_tokens_at(order),
        shared_prev=items.filtered_shared_prev(order),
        output_tokens=items.est_output_tokens[order],
        output_spread=items.est_spread[order],
    )
    config = run.engine_config
    cost = resolve_cost(
        header.model_spec,
        header.hardware,
        config.model_dir,
        config.tensor_parallel_size,
        config.gpu_memory_utilization,
    )
    cuts = split(sequence, cost, options.engines)
    check_split(cuts, len(order), options.engines)
    loader = RequestLoader(store, header, options.chunk_rows)
    shares = []
    for index, cut in enumerate(cuts):
        positions = np.sort(np.asarray(cut, dtype=np.int64))  # keep the sequence's order
        seqs = order[positions]
        requests = []
        for request in loader.take(seqs.tolist()):
            meta = loader.finish(request.request_id)
            requests.append(ShareRequest(meta.seq, request, meta.prompt_sha256, meta.sampling_json))
        shares.append(Share(index, _subsequence(sequence, positions), tuple(requests)))
    return shares, cost


def _subsequence(sequence: ScanSequence, positions: np.ndarray) -> ScanSequence:
    """The sequence at `positions` (ascending), prefix sharing recomputed across the gaps."""
    spread = sequence.output_spread
    return ScanSequence(
        index=sequence.index[positions],
        prompt_tokens=sequence.prompt_tokens[positions],
        shared_prev=shared_across_gaps(sequence.shared_prev, positions),
        output_tokens=sequence.output_tokens[positions],
        output_spread=spread[positions] if spread is not None else None,
    )


def _rest_of(share: Share, done: set[str]) -> Share | None:
    """What of `share` has no row yet (None: all of it has)."""
    keep = np.array([r.request.request_id not in done for r in share.requests], dtype=bool)
    if not keep.any():
        return None
    positions = np.flatnonzero(keep)  # requests are aligned with the sequence
    return Share(
        share.share_index,
        _subsequence(share.sequence, positions),
        tuple(share.requests[p] for p in positions),
    )


@dataclass(slots=True)
class _Engine:
    tag: str
    index: int
    actor: Any
    info: EngineInfo | None = None
    share: Share | None = None  # the share it runs now
    assigned: Share | None = None  # its own share, to run once it has started


@dataclass(slots=True)
class _Totals:
    reports: list[ShareReport] = field(default_factory=list)
    infos: list[EngineInfo] = field(default_factory=list)
    deaths: int = 0


class _Fleet:
    """Starts engine actors, hands out shares, replaces dead actors, records the run."""

    def __init__(
        self,
        run: RunSetup,
        folder: RunFolder,
        cost: CostModel,
        options: ExecuteOptions,
        factory: EngineFactory,
        limits: FleetLimits,
        progress: ProgressCallback | None,
    ) -> None:
        self._ray, self._local_cluster = connect_ray(options.ray_address)
        self._run, self._folder, self._cost = run, folder, cost
        self._options, self._factory, self._limits = options, factory, limits
        self._progress = progress
        self._engines: list[_Engine] = []
        self._refs: dict[Any, tuple[str, _Engine]] = {}  # object ref -> (call, engine)
        self._totals = _Totals()
        self._part_rows: dict[str, int] = {}
        self._actor_class = self._ray.remote(EngineWorker).options(**self._resources())

    def _resources(self) -> dict[str, Any]:
        cluster = self._ray.cluster_resources()
        gpus = self._limits.gpus_per_engine
        if gpus is None:
            gpus = 1 if cluster.get("GPU", 0) > 0 else 0
        k, cpus = self._options.engines, self._limits.cpus_per_engine
        fits = min(
            cluster.get("CPU", 0) // cpus if cpus else k,
            cluster.get("GPU", 0) // gpus if gpus else k,
        )
        if fits < k:
            message = (
                f"{k} engines need {k * cpus:g} CPUs and {k * gpus:g} GPUs; the Ray cluster "
                f"has {cluster.get('CPU', 0):g} CPUs and {cluster.get('GPU', 0):g} GPUs"
            )
            if self._local_cluster:  # nothing will join a cluster this process made
                raise ExecuteError(
                    f"{message}: run fewer engines, or start a cluster "
                    "(`ray start`) and set RAY_ADDRESS"
                )
            log.warning("%s: engines wait until the cluster grows", message)
        return {
            "num_cpus": self._limits.cpus_per_engine,
            "num_gpus": gpus,
            "max_restarts": 0,  # a dead engine is replaced by the driver, with the rest only
            "max_task_retries": 0,
        }

    # -- engines -----------------------------------------------------------------------------

    def _start_engine(self, index: int) -> None:
        n_before = sum(1 for e in self._engines if e.index == index)
        tag = f"e{index}" if n_before == 0 else f"e{index}r{n_before}"
        actor = self._actor_class.remote(
            tag, index, self._factory, self._run.engine_config, self._options.restart_policy
        )
        engine = _Engine(tag, index, actor)
        self._engines.append(engine)
        self._refs[actor.info.remote()] = ("info", engine)

    def stop(self) -> None:
        """Kill every engine actor and wait until Ray reports each one dead, so that none
        writes a part after the run is recorded and its lock released."""
        ray = self._ray
        actors = [e.actor for e in self._engines if e.actor is not None]
        for engine in self._engines:
            engine.actor = None
        for actor in actors:
            ray.kill(actor, no_restart=True)
        dead = (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError)
        for probe in [actor.pid.remote() for actor in actors]:
            with contextlib.suppress(*dead):  # dead, as asked
                ray.get(probe, timeout=60)

    # -- the run -----------------------------------------------------------------------------

    def execute(
        self, store: Store, shares: list[Share], started: float, *, n_skipped: int
    ) -> RunReport:
        run, k = self._run, self._options.engines
        for index in range(k):
            self._start_engine(index)
        # share i is engine i's own (a quick starter never takes a slow starter's share);
        # the queue holds orphans only: the rest of a dead engine's share, for any engine
        for engine, share in zip(self._engines, shares, strict=True):
            engine.assigned = share if share.requests else None
        queue: deque[Share] = deque()
        first = self._first_info(queue)
        lineage = self._run_lineage(first)
        record_run_start(store, lineage, run.directory, resume=run.resume)
        events = LineageEvents(self._options.openlineage, store.root, lineage, run.directory)
        events.start()
        status, error = "failed", "interrupted"
        try:
            self._loop(queue, lineage)
            status, error = "completed", ""
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.stop()  # before the totals: no engine adds a part after them
            wall_s = time.perf_counter() - started
            execution = self._execution(status, wall_s)
            totals = record_run_finish(store, run.run_id, run.directory, execution)
            events.finish(status, totals.n_requests, error)
        self._report_progress()
        return RunReport(
            run_id=run.run_id,
            plan_id=lineage.plan_id,
            dataset=lineage.dataset,
            status=status,
            engine_prefix_cache_hit_rate=execution.engine_prefix_cache_hit_rate,
            engine_start_s=execution.engine_start_s,
            wall_s=wall_s,
            results_dir=run.directory,
            n_skipped=n_skipped,
            totals=totals,
            engine_busy_s=execution.engine_busy_s,
            n_engine_restarts=execution.n_engine_restarts,
            settings=first.settings,
            replan=None,
            estimates=estimate_accuracy(store, run.run_id, run.directory),
        )

    def _first_info(self, queue: deque[Share]) -> EngineInfo:
        """Wait until one engine has started (its name and version are the run's lineage)."""
        while True:
            if not self._refs:
                raise ExecuteError("no engine actor could start (see the Ray logs)")
            ready, _ = self._ray.wait(list(self._refs), num_returns=1)
            call, engine = self._refs.pop(ready[0])
            if self._settle(ready[0], call, engine, queue) and engine.info is not None:
                return engine.info

    def _loop(self, queue: deque[Share], lineage: RunLineage) -> None:
        context = RunContext(
            folder=self._folder,
            lineage=lineage,
            admission=self._run.header.admission,
            cost=self._cost,
            flush_rows=self._options.flush_rows,
            flush_seconds=self._options.flush_seconds,
            n_engines=self._options.engines,
        )
        last_report = 0.0
        while queue or any(e.share or e.assigned for e in self._engines):
            for engine in self._engines:  # started idle engines: their own share, else an orphan
                if engine.info is None or engine.share is not None or engine.actor is None:
                    continue
                if engine.assigned is not None:
                    engine.share, engine.assigned = engine.assigned, None
                elif queue:
                    engine.share = queue.popleft()
                else:
                    continue
                self._refs[engine.actor.run_share.remote(engine.share, context)] = ("share", engine)
            if not self._refs:
                raise ExecuteError("every engine actor is gone and none could be started")
            ready, _ = self._ray.wait(
                list(self._refs), num_returns=1, timeout=self._options.progress_interval_s
            )
            for ref in ready:
                call, engine = self._refs.pop(ref)
                self._settle(ref, call, engine, queue)
            now = time.monotonic()
            if now - last_report >= max(self._options.progress_interval_s, 1.0):
                self._report_progress()
                last_report = now

    def _settle(self, ref: Any, call: str, engine: _Engine, queue: deque[Share]) -> bool:
        """Take one finished call's result; a dead engine's share goes back to the queue.
        Returns False when the engine died."""
        ray = self._ray
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as exc:  # SIGKILL, OOM kill, lost node
            if exc.actor_init_failed:  # the engine cannot start: no replacement would either
                raise EngineFailedError(f"engine {engine.tag} could not start: {exc}") from None
            self._on_death(engine, queue, exc)
            return False
        except ray.exceptions.RayTaskError as exc:  # the engine failed for good: stop the run
            raise exc.as_instanceof_cause() from None
        if call == "info":
            engine.info = result
            self._totals.infos.append(result)
        else:
            self._totals.reports.append(result)
            engine.share = None
        return True

    def _on_death(self, engine: _Engine, queue: deque[Share], exc: Exception) -> None:
        self._totals.deaths += 1
        log.warning("engine %s died: %s", engine.tag, exc)
        orphan = engine.share or engine.assigned
        engine.share = engine.assigned = engine.actor = None
        self._folder.remove_temporary(engine.tag)
        if self._totals.deaths > self._limits.max_engine_deaths:
            raise ExecuteError(
                f"{self._totals.deaths} engine actors died (last: {engine.tag}: {exc}); "
                "the run is resumable once the cause is fixed"
            )
        if orphan is not None:
            # what the dead engine finished is in complete parts; the rest runs again
            rest = _rest_of(orphan, self._folder.done_request_ids())
            if rest is not None:
                queue.appendleft(rest)
        if queue:
            self._start_engine(engine.index)

    # -- records -----------------------------------------------------------------------------

    def _run_lineage(self, info: EngineInfo) -> RunLineage:
        return run_lineage(
            self._run, info.name, info.version, info.engine_params_json, self._options
        )

    def _execution(self, status: str, wall_s: float) -> Execution:
        reports, infos = self._totals.reports, self._totals.infos
        queries = sum(r.prefix_cache_queries for r in reports)
        hits = sum(r.prefix_cache_hits for r in reports)
        return Execution(
            status=status,
            engine_start_s=max((i.start_seconds for i in infos), default=0.0),
            wall_s=wall_s,
            engine_busy_s=sum(r.busy_seconds for r in reports),
            n_engine_restarts=self._totals.deaths + sum(r.n_engine_restarts for r in reports),
            engine_prefix_cache_hit_rate=hits / queries if queries else None,
        )

    def _report_progress(self) -> None:
        if self._progress is None:
            return
        rows = sum(self._folder.rows_by_part(self._part_rows).values())
        output_tokens = sum(r.output_tokens for r in self._totals.reports)
        self._progress(rows, int(self._run.header.n_requests), output_tokens)
