"""The `blend` command line: each stage of the pipeline, the whole of it, queries, simulation."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from blend.capacity_cli import capacity_command
from blend.cli.errors import one_line, writable_store
from blend.control.cli import lp_command
from blend.hetegen.cli import hetegen_app
from blend.names import InvalidNameError, NameKind, validate_name
from blend.planners import PlannerName
from blend.query.cli import query_command
from blend.simulate.cli import simulate_command
from blend.store import Store

if TYPE_CHECKING:
    from blend.engines.base import EngineConfig
    from blend.plan import PlanOptions

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
    from blend.verbosity import configure

    configure(verbose)


def _name_rule(kind: NameKind) -> Callable[[str | None], str | None]:
    """A typer callback refusing values that break the naming rule (blend.names)."""

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_name(value, kind)
        except InvalidNameError as exc:
            raise typer.BadParameter(str(exc)) from None

    return check


StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Store folder (default: $BLEND_STORE or ./blend-store)."),
]
ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", help="Model folder (default: the tiny demo model, created once)."),
]
DatasetOpt = Annotated[
    str, typer.Option("--dataset", help="Dataset name.", callback=_name_rule(NameKind.DATASET))
]
PlannerOpt = Annotated[PlannerName, typer.Option(help="How to order the requests.")]
ModelSpecOpt = Annotated[
    str | None,
    typer.Option(
        "--model-spec",
        help="Cost model of the model (a spec name or JSON file; default: the model "
        "folder's config.json).",
    ),
]
HardwareOpt = Annotated[
    str | None,
    typer.Option(
        help="Hardware the plan is for (a100-80g, h100-80g, h200, cpu-local or a JSON file; "
        "default: this machine's)."
    ),
]
WarmupOpt = Annotated[
    float,
    typer.Option(
        "--warmup-fraction",
        help="Share of the requests without a measured length that run first, to measure "
        "output lengths (0: no warm-up).",
    ),
]
SearchOpt = Annotated[
    bool,
    typer.Option(
        "--search-settings/--no-search-settings",
        help="After the warm-up, choose the engine's token budget and running-request limit "
        "by simulating the plan (restarting the engine when the gain is worth it).",
    ),
]
TokensOpt = Annotated[
    int | None,
    typer.Option(
        "--max-num-batched-tokens",
        help="Tokens per engine step (default: vLLM's offline default, then the search's).",
    ),
]
SeqsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-num-seqs",
        help="Running requests at most (default: vLLM's offline default, then the search's).",
    ),
]
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="vllm, hetegen (CPU+GPU split layers, for models larger than the GPU) or auto: "
        "hetegen when the weights and the KV cache do not fit the GPU.",
    ),
]
IncrementalOpt = Annotated[
    bool,
    typer.Option(
        "--incremental/--full",
        help="Plan only prompts without a result from this model and sampling (--model), "
        "or all of them.",
    ),
]

EnginesOpt = Annotated[
    int,
    typer.Option(
        "--engines",
        min=1,
        help="Engines that run the plan in parallel, one share each, as Ray actors (one GPU "
        "each where the cluster has GPUs; Ray: $RAY_ADDRESS, else a local cluster).",
    ),
]
ResultsUriOpt = Annotated[
    str | None,
    typer.Option(
        "--results-uri",
        help="With --engines: the store's results folder as the engines reach it (e.g. "
        "s3://bucket/blend-results; default: its local path, shared by every node).",
    ),
]


def resolve_model(store: Store, model: Path | None) -> Path:
    """The given model folder, or the demo model (created on first use)."""
    if model is not None:
        if not (model / "config.json").is_file():
            raise typer.BadParameter(
                f"{model} is not a model folder (no config.json)", param_hint="--model"
            )
        try:
            validate_name(model.resolve().name, NameKind.MODEL, f"the model folder {model}")
        except InvalidNameError as exc:
            raise typer.BadParameter(str(exc), param_hint="--model") from None
        return model.resolve()
    from blend.demo.model import ensure_tiny_model

    return ensure_tiny_model(store.models_dir)


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
    from blend.lineage import model_sha256
    from blend.profile import profile_dataset

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
    from blend.engine_settings import EngineSettings, SettingsSource
    from blend.plan import PlanOptions

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
    from blend.lineage import model_sha256
    from blend.plan import PlanError, plan_dataset

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
        typer.Option("--plan-id", help="Plan to run.", callback=_name_rule(NameKind.PLAN_ID)),
    ],
    model: ModelOpt = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            help="Resume this run instead of a new one.", callback=_name_rule(NameKind.RUN_ID)
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
    from blend.plan_items import PlanNotFoundError, read_plan_header
    from blend.results import dataset_dir

    opened = writable_store(store)
    try:  # before the engine code is imported or a model built (seconds)
        header = read_plan_header(opened, plan_id)
    except PlanNotFoundError as exc:
        err_console.print(f"[red]execute failed:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    dataset_dir(opened.results_dir, header.dataset)  # a planted link: refused now
    from blend.execute import ExecuteError, ExecuteOptions, execute_plan

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
    from blend.engines.base import EngineConfig
    from blend.engines.selection import ENGINE_NAMES

    if engine not in ENGINE_NAMES:
        raise typer.BadParameter(
            f"{engine!r}: expected {', '.join(ENGINE_NAMES)}", param_hint="--engine"
        )
    return EngineConfig(
        model_dir=model_dir,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        kv_cache_gib=kv_cache_gib,
        engine=engine,
    )


@app.command()
def run(
    input_path: Annotated[
        str | None, typer.Argument(help="Input file (default: the bundled demo dataset).")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Dataset name (default: file stem).", callback=_name_rule(NameKind.DATASET)
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
    from blend.results import dataset_dir

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
    from blend.execute import ExecuteOptions
    from blend.pipeline import PipelineOptions, pipeline_input, run_pipeline

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
    from blend.store import default_store_dir, verify_results

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
    from blend.progress import progress_reporter

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


def _print_run(r: Any) -> None:
    hit = "n/a" if r.prefix_cache_hit_rate is None else f"{r.prefix_cache_hit_rate:.1%}"
    console.print(
        f"[bold]execute[/bold] {r.run_id} {r.status}: {r.n_requests} rows "
        f"({r.n_errors} errors), {r.input_tokens:,} prompt + {r.output_tokens:,} output tokens, "
        f"{r.cached_tokens:,} cached (hit rate {hit}); engine start {r.engine_start_s:.1f} s, "
        f"wall {r.wall_s:.1f} s, {r.tokens_per_second:,.0f} tok/s"
    )
    if r.replan:
        search = r.replan.get("settings_search") or {}
        restart = r.replan.get("restart_settings")
        console.print(
            f"  re-planned after the warm-up ({r.replan['warmup_finished']} measured, "
            f"{r.replan['warmup_running']} still running): {r.replan['n_replanned']} requests, "
            f"{r.replan['admission']} admission; settings search: "
            + (
                "kept the engine's"
                if not restart
                else f"restarted with {restart['max_num_batched_tokens']} tokens x "
                f"{restart['max_num_seqs']} seqs"
            )
            + (
                f" (predicted gain {search['predicted_gain_s']:.1f} s)"
                if "predicted_gain_s" in search
                else ""
            )
        )
    _print_estimates(r)


def _print_estimates(r: Any) -> None:
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
