"""What an execution needs before its engine starts, shared by one engine (stage.py) and a
Ray fleet (ray_fleet.py): the options, the report, the checked run (plan header, tokenizer
and model hashes, resume or new run id), its lineage and its lock."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from blend.engines.base import Engine, EngineConfig
from blend.engines.model_source import model_source
from blend.engines.settings import EngineSettings
from blend.engines.supervisor import RestartPolicy
from blend.engines.tokenize import tokenizer_sha256
from blend.execute.replan import ReplanReport
from blend.plan.items import (
    PlanHeader,
    PlanNotFoundError,
    read_plan_header,
)
from blend.store.database import Store
from blend.store.lineage import RunLineage, git_revision, model_sha256
from blend.store.process_lock import LockFileError
from blend.store.results import (
    run_dir,
)
from blend.store.run_records import (
    GroupEstimate,
    RunRecordError,
    RunTotals,
    check_resumable,
    latest_unfinished_run,
    new_run_id,
)
from blend.store.runs import RunBusyError, acquire_run_lock, mark_dead_runs

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
    totals: RunTotals  # rows and tokens of the run (all parts, resumed ones included)
    engine_start_s: float  # engine (re)starts of this execution
    wall_s: float  # this execution, engine start included
    results_dir: Path
    n_skipped: int  # rows already done by an earlier attempt of the same run
    engine_busy_s: float = 0.0  # time inside the engine's add_request / step calls
    n_engine_restarts: int = 0  # engine failures survived by restarting (this execution)
    settings: EngineSettings | None = None  # what the engine ran with (its last start)
    replan: ReplanReport | None = None  # what the re-plan after the warm-up measured and chose
    # estimated vs actual output tokens of its largest prefix groups (completed runs)
    estimates: list[GroupEstimate] = field(default_factory=list)
    # the engine's own prefix-cache counter, this execution (see Execution): not the run's rate
    engine_prefix_cache_hit_rate: float | None = None
    block_size: int | None = None  # tokens per KV cache block of the engine (None: not known)

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        """Cached / prompt tokens over the run's rows: the one definition (the SQL macro
        prefix_cache_hit_rate), as the run_summary view shows it."""
        return self.totals.prefix_cache_hit_rate

    def cache_note(self) -> str | None:
        """Why nothing was cached, where the cache's block size says why: prefix caching
        reuses whole KV blocks only, and a prompt's last token is always computed, so a prompt
        no longer than one block can never hit, however much of it other prompts share."""
        longest, block = self.totals.max_prompt_tokens, self.block_size
        if self.cached_tokens or longest is None or block is None or longest > block:
            return None
        return (
            f"0 cached: prompts no longer than the {block}-token KV cache block cannot be "
            f"reused (prefix caching reuses whole blocks only; the longest prompt here has "
            f"{longest} tokens)"
        )

    @property
    def n_requests(self) -> int:
        return self.totals.n_requests

    @property
    def n_errors(self) -> int:
        return self.totals.n_errors

    @property
    def input_tokens(self) -> int:
        return self.totals.input_tokens

    @property
    def output_tokens(self) -> int:
        return self.totals.output_tokens

    @property
    def cached_tokens(self) -> int:
        return self.totals.cached_tokens

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
    # a part at least every this many finished requests: 4096, not fewer, so that a fast engine
    # writes a part every few seconds, not hundreds (each part is a file every reader opens)
    flush_rows: int = 4096
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
    on_replan: Callable[[ReplanReport], None] | None = None  # told the re-plan's report, stored
    # more than 1: that many engines as Ray actors, one share of the plan each (blend/scale)
    engines: int = 1
    ray_address: str | None = None  # Ray cluster to use (default: $RAY_ADDRESS, else local)
    results_uri: str | None = None  # the store's results folder as engines reach it (a URL)


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
    return config if header.settings is None else config.with_settings(header.settings)


def run_lineage(
    run: RunSetup,
    engine: str,
    engine_version: str,
    engine_params_json: str,
    options: ExecuteOptions,
) -> RunLineage:
    """The lineage of `run` executed by `engine` (the one or many engines that run it)."""
    header = run.header
    model = model_source(run.engine_config.model_dir)  # a hub snapshot: its id and commit
    return RunLineage(
        run_id=run.run_id,
        plan_id=header.plan_id,
        dataset=header.dataset,
        snapshot=header.snapshot,
        planner=header.planner,
        model=model.name,
        model_sha256=run.model_sha256,
        tokenizer_sha256=run.tokenizer_sha256,
        engine=engine,
        engine_version=engine_version,
        engine_params_json=engine_params_json,
        flow_run_id=options.flow_run_id,
        deployment_name=options.deployment_name,
        git_revision=git_revision(),
        model_revision=model.revision,
    )


def _plan_header(store: Store, plan_id: str) -> PlanHeader:
    try:
        return read_plan_header(store, plan_id)
    except PlanNotFoundError as exc:
        raise ExecuteError(str(exc)) from None


@contextmanager
def held_run_lock(directory: Path, run_id: str) -> Iterator[None]:
    """Hold the run's lock (blend/store/runs.py): two processes never execute the same run."""
    try:
        fd = acquire_run_lock(directory, run_id)
    except (RunBusyError, LockFileError) as exc:
        raise ExecuteError(str(exc)) from None
    try:
        yield
    finally:
        os.close(fd)  # closing releases the lock; a killed process releases it too
