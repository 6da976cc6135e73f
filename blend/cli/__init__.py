"""The `blend` command line: each stage of the pipeline, the whole of it, queries, simulation."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from blend.cli.capacity import capacity_command
from blend.cli.control import lp_command
from blend.cli.errors import one_line, writable_store
from blend.cli.export import export_command
from blend.cli.hetegen import hetegen_app
from blend.cli.options import (
    DatasetOpt,
    EngineOpt,
    EnginesOpt,
    HardwareOpt,
    IncrementalOpt,
    ModelOpt,
    ModelSpecOpt,
    PlannerOpt,
    ResultsUriOpt,
    SearchOpt,
    SeqsOpt,
    StoreOpt,
    TokensOpt,
    WarmupOpt,
    name_rule,
    resolve_model,
)
from blend.cli.query import query_command
from blend.cli.simulate import simulate_command
from blend.planners import PlannerName
from blend.store.database import Store
from blend.store.names import InvalidNameError, NameKind, validate_name

if TYPE_CHECKING:
    from blend.engines.base import EngineConfig
    from blend.execute.setup import RunReport
    from blend.plan.stage import PlanOptions

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


@app.callback()
def _global_options(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Also print vLLM's, torch's and transformers' own warnings and logs "
            "(default: their errors only).",
        ),
    ] = False,
) -> None:
    # Before any command imports vLLM or torch: they read these settings at import.
    from blend.cli.verbosity import configure

    configure(verbose)


@app.command()
def ingest(
    input_path: Annotated[str, typer.Argument(help="JSONL, OpenAI batch JSONL, CSV or Parquet.")],
    dataset: DatasetOpt,
    store: StoreOpt = None,
) -> None:
    """Read prompts into the store; bad rows go to `rejects`."""
    from blend.ingest import IngestError, check_input, ingest_file

    try:
        path = check_input(input_path)  # before the store is made or opened
        report = ingest_file(writable_store(store), path, dataset)
    except IngestError as exc:
        err_console.print(f"[red]ingest failed:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    _print_ingest(report)


@app.command()
def profile(
    dataset: DatasetOpt,
    model: ModelOpt = None,
    snapshot: Annotated[int | None, typer.Option(help="Snapshot (default: latest).")] = None,
    store: StoreOpt = None,
) -> None:
    """Tokenize with the model's chat template; SQL profiles of lengths and prefix overlap."""
    opened = writable_store(store)  # before the tokenizer code is imported (seconds)
    from blend.profile.stage import profile_dataset
    from blend.store.lineage import model_sha256

    model_dir = resolve_model(opened, model)
    try:
        report = profile_dataset(
            opened, dataset, model_dir, snapshot=snapshot, model_sha256=model_sha256(model_dir)
        )
    except (ValueError, OSError) as exc:  # ProfileError, ChatTemplateError, no tokenizer...
        err_console.print(f"[red]profile failed:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    _print_profile(report)


def _plan_options(
    planner: PlannerName,
    seed: int,
    model_spec: str | None,
    hardware: str | None,
    warmup_fraction: float,
    search_settings: bool,
    max_num_batched_tokens: int | None,
    max_num_seqs: int | None,
    batch_size: int = 256,
) -> PlanOptions:
    from blend.engines.settings import EngineSettings, SettingsSource
    from blend.plan.stage import PlanOptions

    engine = None
    if max_num_batched_tokens is not None or max_num_seqs is not None:
        if max_num_batched_tokens is None or max_num_seqs is None:
            raise typer.BadParameter(
                "give both --max-num-batched-tokens and --max-num-seqs, or neither",
                param_hint="--max-num-batched-tokens",
            )
        engine = EngineSettings(max_num_batched_tokens, max_num_seqs, True, SettingsSource.EXPLICIT)
    return PlanOptions(
        planner=planner,
        seed=seed,
        batch_size=batch_size,
        model_spec=model_spec,
        hardware=hardware,
        warmup_fraction=warmup_fraction,
        engine=engine,
        search_settings=search_settings,
    )


@app.command()
def plan(
    dataset: DatasetOpt,
    planner: PlannerOpt = PlannerName.DFS,
    hardware: HardwareOpt = None,
    model_spec: ModelSpecOpt = None,
    snapshot: Annotated[int | None, typer.Option(help="Snapshot (default: latest).")] = None,
    seed: int = 0,
    batch_size: Annotated[int, typer.Option(help="Requests per checkpoint batch.")] = 256,
    warmup_fraction: WarmupOpt = 0.01,
    search_settings: SearchOpt = True,
    max_num_batched_tokens: TokensOpt = None,
    max_num_seqs: SeqsOpt = None,
    incremental: IncrementalOpt = True,
    model: ModelOpt = None,
    store: StoreOpt = None,
) -> None:
    """Order the requests of a profiled dataset and store the plan."""
    opened = writable_store(store)  # before the planner code is imported (seconds)
    from blend.plan.stage import PlanError, plan_dataset
    from blend.store.lineage import model_sha256

    model_dir = resolve_model(opened, model)
    try:
        options = _plan_options(
            planner,
            seed,
            model_spec,
            hardware,
            warmup_fraction,
            search_settings,
            max_num_batched_tokens,
            max_num_seqs,
            batch_size,
        )
        report = plan_dataset(
            opened,
            dataset,
            options,
            snapshot=snapshot,
            model_sha256=model_sha256(model_dir),
            incremental=incremental,
            model_dir=model_dir,
        )
    except (PlanError, ValueError) as exc:
        err_console.print(f"[red]plan failed:[/red] {exc}")
        raise typer.Exit(1) from None
    _print_plan(report)


@app.command()
def execute(
    plan_id: Annotated[
        str,
        typer.Option("--plan-id", help="Plan to run.", callback=name_rule(NameKind.PLAN_ID)),
    ],
    model: ModelOpt = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            help="Resume this run instead of a new one.", callback=name_rule(NameKind.RUN_ID)
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Resume the latest unfinished run of this plan, if any.")
    ] = False,
    max_num_seqs: Annotated[
        int | None, typer.Option(help="Running requests per step (default: the plan's).")
    ] = None,
    max_num_batched_tokens: Annotated[
        int | None, typer.Option(help="Tokens per step (default: the plan's).")
    ] = None,
    kv_cache_gib: Annotated[float, typer.Option(help="CPU build: KV cache GiB.")] = 1.0,
    engine: EngineOpt = "auto",
    engines: EnginesOpt = 1,
    results_uri: ResultsUriOpt = None,
    store: StoreOpt = None,
) -> None:
    """Run a plan through the engine (vLLM, or hetegen); results go to Parquet with lineage."""
    from blend.plan.items import PlanNotFoundError, read_plan_header
    from blend.store.results import dataset_dir

    opened = writable_store(store)
    try:  # before the engine code is imported or a model built (seconds)
        header = read_plan_header(opened, plan_id)
    except PlanNotFoundError as exc:
        err_console.print(f"[red]execute failed:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    dataset_dir(opened.results_dir, header.dataset)  # a planted link: refused now
    from blend.execute.stage import ExecuteError, ExecuteOptions, execute_plan

    config = _engine_config(
        resolve_model(opened, model), max_num_seqs, max_num_batched_tokens, kv_cache_gib, engine
    )
    # Budgets given on the command line win over the ones the planner recommends.
    explicit = max_num_seqs is not None or max_num_batched_tokens is not None
    options = ExecuteOptions(
        resume=resume, plan_budgets=not explicit, engines=engines, results_uri=results_uri
    )
    try:
        with _execute_progress() as progress:
            report = execute_plan(
                opened, plan_id, config, run_id=run_id, options=options, progress=progress
            )
    except ExecuteError as exc:
        err_console.print(f"[red]execute failed:[/red] {exc}")
        raise typer.Exit(1) from None
    _print_run(report)


def _engine_config(
    model_dir: Path,
    max_num_seqs: int | None,
    max_num_batched_tokens: int | None,
    kv_cache_gib: float,
    engine: str = "auto",
) -> EngineConfig:
    from blend.engines.base import EngineConfig, EngineName

    try:
        name = EngineName(engine)
    except ValueError:
        raise typer.BadParameter(
            f"{engine!r}: expected {', '.join(EngineName)}", param_hint="--engine"
        ) from None
    return EngineConfig(
        model_dir=model_dir,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        kv_cache_gib=kv_cache_gib,
        engine=name,
    )


@app.command()
def run(
    input_path: Annotated[
        str | None, typer.Argument(help="Input file (default: the bundled demo dataset).")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Dataset name (default: file stem).", callback=name_rule(NameKind.DATASET)
        ),
    ] = None,
    planner: PlannerOpt = PlannerName.DFS,
    model: ModelOpt = None,
    model_spec: ModelSpecOpt = None,
    hardware: HardwareOpt = None,
    seed: int = 0,
    incremental: IncrementalOpt = True,
    warmup_fraction: WarmupOpt = 0.01,
    search_settings: SearchOpt = True,
    max_num_batched_tokens: TokensOpt = None,
    max_num_seqs: SeqsOpt = None,
    kv_cache_gib: Annotated[float, typer.Option(help="CPU build: KV cache GiB.")] = 1.0,
    engine: EngineOpt = "auto",
    engines: EnginesOpt = 1,
    results_uri: ResultsUriOpt = None,
    store: StoreOpt = None,
) -> None:
    """The whole pipeline: ingest -> profile -> plan -> execute. No arguments: the demo."""
    from blend.ingest import IngestError, check_input
    from blend.store.results import dataset_dir

    given = None
    if input_path is not None:
        try:  # before the store is touched or a model built: a typo fails at once
            check_input(input_path)
        except IngestError as exc:
            err_console.print(f"[red]run failed:[/red] {escape(str(exc))}")
            raise typer.Exit(1) from None
        given = Path(input_path)
    if given is not None and dataset is None:
        try:
            dataset = validate_name(given.stem, NameKind.DATASET, f"file {given}")
        except InvalidNameError as exc:
            hint = f"{exc}; name the dataset with --dataset"
            raise typer.BadParameter(hint, param_hint="--dataset") from None
    opened = writable_store(store)
    # Imported once the input and the store are known good: the engine code takes seconds.
    from blend.execute.stage import ExecuteOptions
    from blend.pipeline.chain import PipelineOptions, pipeline_input, run_pipeline

    if given is None:
        given, dataset = pipeline_input(opened, None, dataset)
        console.print(f"demo input: {escape(str(given))}")
    assert dataset is not None  # named above, or the demo's
    dataset_dir(opened.results_dir, dataset)  # a planted link: refused before any stage runs
    model_dir = resolve_model(opened, model)
    console.print(f"model: {escape(str(model_dir))}")
    options = _plan_options(
        planner,
        seed,
        model_spec,
        hardware,
        warmup_fraction,
        search_settings,
        max_num_batched_tokens,
        max_num_seqs,
    )
    printers: dict[str, Any] = {
        "ingest": _print_ingest,
        "profile": _print_profile,
        "plan": _print_plan,
        "execute": _print_run,
    }
    with _execute_progress() as progress:
        report = run_pipeline(
            opened,
            _engine_config(model_dir, None, None, kv_cache_gib, engine),
            PipelineOptions(
                given,
                dataset,
                options,
                incremental,
                execute=ExecuteOptions(engines=engines, results_uri=results_uri),
            ),
            progress=progress,
            on_stage=lambda name, r: printers[name](r),
        )
    if report.resumed_run is not None:
        console.print(f"continued the unfinished run {report.resumed_run} (its finished rows kept)")
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in report.stage_seconds.items())
    console.print(f"\nstage wall time: {timings}")
    if report.run is None:
        console.print("nothing to execute: every prompt already has a result (--full re-runs)")
    _print_where(opened, report.ingest.dataset)


app.command("query")(query_command)


@app.command()
def verify(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Move the unreadable parts to <store>/quarantine/ (never deleted; recorded in "
            "quarantine.jsonl there): the next `blend run` runs their requests again.",
        ),
    ] = False,
    full: Annotated[
        bool,
        typer.Option(
            "--full", help="Decode every row group, not only each part's footer (reads it all)."
        ),
    ] = False,
    store: StoreOpt = None,
) -> None:
    """Check that every result part can be read; exit 1 when one cannot (and is not repaired).

    A part is readable when its Parquet footer parses (what every command that reads
    `results` needs); --full also decodes its data. Commands that read results move a
    damaged part to the quarantine themselves, saying so; `blend query` leaves it out.
    """
    from blend.store.database import default_store_dir, verify_results

    root = (store if store is not None else default_store_dir()).resolve()
    if not root.is_dir():
        err_console.print(f"[red]verify failed:[/red] no store at {escape(str(root))}")
        raise typer.Exit(1)
    report = verify_results(Store(root), full=full, repair=repair)
    _print_verify(Store(root), report)
    if report.unreadable and not repair:
        raise typer.Exit(1)


def _print_verify(store: Store, r: Any) -> None:
    what = "every row group" if r.full else "footers"
    console.print(
        f"[bold]verify[/bold] {r.n_parts} result parts ({r.n_bytes / 2**20:,.1f} MiB, {what}) "
        f"under {escape(str(store.results_dir))} in {r.seconds:.2f} s: "
        + (f"{len(r.unreadable)} unreadable" if r.unreadable else "all readable")
    )
    moved = {m.source for m in r.moved}
    for part in r.unreadable:
        state = "moved to the quarantine" if part.path in moved else "unreadable"
        console.print(
            f"  {state}: {escape(str(part.path.relative_to(store.root)))}: {escape(part.reason)}"
        )
    if r.moved:
        console.print(
            f"moved {len(r.moved)} part(s) to {escape(str(store.quarantine_dir))} (recorded in "
            "quarantine.jsonl there); the next `blend run` runs their requests again"
        )
    elif r.unreadable:
        console.print(
            "`blend verify --repair` moves them to the quarantine (nothing is deleted), then "
            "the next `blend run` runs their requests again"
        )
    if r.n_quarantined_before:
        console.print(
            f"{r.n_quarantined_before} part(s) were moved to the quarantine before: "
            f"{escape(str(store.quarantine_dir))}/quarantine.jsonl"
        )


def _execute_progress() -> Any:
    """Requests done, rows/s, output tokens/s and the time left: a bar on a terminal, a line
    every few seconds otherwise (on stderr, beside the engine's own messages)."""
    from blend.cli.progress import progress_reporter

    return progress_reporter("execute", err_console)


def _print_ingest(r: Any) -> None:
    state = "already ingested (same file)" if r.reused else "ingested"
    console.print(
        f"[bold]ingest[/bold] {state}: dataset {r.dataset!r} snapshot {r.snapshot} "
        f"({r.source_format}): {r.n_rows} prompts, {r.n_rejected} rejected"
    )
    for reason, count in sorted(r.reject_reasons.items()):
        console.print(f"  rejected {count} x {reason}")
    if r.n_named_model:
        names = ", ".join(f"{name} x {n}" for name, n in r.named_models.items())
        more = ", ..." if sum(r.named_models.values()) < r.n_named_model else ""
        console.print(
            f"  {r.n_named_model} lines name a model in body.model ({escape(names)}{more}); "
            "blend answers them with the run's model (--model) instead"
        )


def _print_profile(r: Any) -> None:
    if r.n_prompts == 0:
        console.print(f"[bold]profile[/bold] snapshot {r.snapshot} of {r.dataset!r} has no prompts")
        return
    console.print(
        f"[bold]profile[/bold] {r.n_prompts} prompts, {r.input_tokens:,} tokens; "
        f"length mean {r.mean_tokens:.0f} p50 {r.p50_tokens:.0f} p90 {r.p90_tokens:.0f} "
        f"p99 {r.p99_tokens:.0f} max {r.max_tokens}; over max_model_len {r.max_model_len}: "
        f"{r.n_over_length}; prefix sharing {r.sharing_ratio:.1%}"
    )
    if r.n_over_length:
        more = ", ..." if r.n_over_length > len(r.over_length_ids) else ""
        console.print(
            f"  [yellow]{r.n_over_length} prompts leave no room for output within "
            f"max_model_len {r.max_model_len}[/yellow] (they will be error rows, not sent to the "
            f"engine): {escape(', '.join(r.over_length_ids))}{more}"
        )
    for g in r.top_groups[:5]:
        console.print(
            f"  shared prefix group {g.rank}: {g.n_prompts} prompts x "
            f"{g.shared_prefix_tokens} tokens (first {g.first_request_id})"
        )
    for c in r.request_classes:
        console.print(
            f"  request class {c.name}: {c.n_requests} prompts, mean {c.prompt_tokens:,.0f} "
            f"prompt + {c.output_tokens:,.0f} estimated output tokens"
        )


def _print_plan(r: Any) -> None:
    done = f" ({r.n_already_done} already answered, left out)" if r.n_already_done else ""
    sources = ", ".join(f"{n} {k}" for k, n in sorted(r.estimate_sources.items()))
    console.print(
        f"[bold]plan[/bold] {r.plan_id}: {r.planner} ({r.admission} admission), "
        f"{r.n_requests} requests{done}, {r.n_warmup} of them first as a warm-up; keeps "
        f"{r.sharing_ratio:.1%} prefix sharing (tree: {r.dfs_sharing_ratio:.1%}); planned in "
        f"{r.plan_seconds:.2f} s for {r.model_spec} on {r.hardware}"
    )
    if r.engine is not None:
        console.print(
            f"  engine: {r.engine.label()} ({r.engine.source}); output estimates: {sources}"
        )
    if r.bounds is not None:
        console.print(f"  {bounds_line(r.bounds)}")


def bounds_line(bounds: Any) -> str:
    """The plan's bounds in words: T_seq first (the engine blend runs), T_opt beside it."""
    steps = f" in at least {bounds.n_min_steps:,} steps" if bounds.n_min_steps else ""
    return (
        f"lower bounds at the estimated lengths: T_seq {bounds.t_seq_s:,.1f} s{steps} (vLLM: "
        f"attention after the GEMMs), T_opt {bounds.t_opt_s:,.1f} s (an engine that overlaps "
        "them); they hold as far as the estimates do"
    )


def _print_run(r: RunReport) -> None:
    hit = "n/a" if r.prefix_cache_hit_rate is None else f"{r.prefix_cache_hit_rate:.1%}"
    console.print(
        f"[bold]execute[/bold] {r.run_id} {r.status}: {r.n_requests} rows "
        f"({r.n_errors} errors), {r.input_tokens:,} prompt + {r.output_tokens:,} output tokens, "
        f"{r.cached_tokens:,} cached (hit rate {hit}); engine start {r.engine_start_s:.1f} s, "
        f"wall {r.wall_s:.1f} s, {r.tokens_per_second:,.0f} tok/s"
    )
    replan = r.replan
    if replan is not None:
        search, restart = replan.settings_search, replan.restart_settings
        gain = None if search is None else search.predicted_gain_s
        console.print(
            f"  re-planned after the warm-up ({replan.warmup_finished} measured, "
            f"{replan.warmup_running} still running): {replan.n_replanned} requests, "
            f"{replan.admission} admission; settings search: "
            + ("kept the engine's" if restart is None else f"restarted with {restart.label()}")
            + ("" if gain is None else f" (predicted gain {gain:.1f} s)")
        )
    _print_estimates(r)


def _print_estimates(r: RunReport) -> None:
    if not r.estimates:
        return
    console.print("  output estimates vs actual (largest prefix groups; view estimate_accuracy):")
    for g in r.estimates:
        console.print(
            f"    {g.prefix_group or '(no group)'}: {g.n_requests} requests, estimated "
            f"{g.mean_estimate:,.0f} ({g.est_source}), actual {g.mean_actual:,.0f} tokens"
        )


def _print_where(store: Store, dataset: str) -> None:
    console.print(f"\nresults: {escape(str(store.results_dir / f'dataset={dataset}'))}")
    console.print(f"store:   {escape(str(store.db_path))}\n\ntry:")
    prefix = f"blend query --store {escape(shlex.quote(str(store.root)))}"
    examples = [
        "SELECT finish_reason, count(*) AS n, avg(n_output_tokens) AS avg_out "
        "FROM results GROUP BY ALL",
        "SELECT request_id, n_prompt_tokens, error FROM results WHERE error IS NOT NULL",
        "SELECT line_no, reason FROM rejects ORDER BY line_no",
        "SELECT run_id, status, n_requests, output_tokens, wall_s FROM runs ORDER BY started_at",
    ]
    for e in examples:
        console.print(f'  {prefix} "{e}"')


app.command("simulate")(simulate_command)
app.command("lp")(lp_command)
app.add_typer(hetegen_app, name="hetegen")
app.command("capacity")(capacity_command)
app.command("export")(export_command)


def main() -> None:
    """The `blend` command: a user error (blend/cli/errors.py) is one line and exit code 1."""
    try:
        app()
    except Exception as exc:
        message = one_line(exc)
        if message is None:
            raise  # a bug: its traceback helps
        err_console.print(f"[red]blend failed:[/red] {escape(message)}")
        raise SystemExit(1) from None
