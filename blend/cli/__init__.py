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
from blend.cli.engine_options import (
    ChunkedPrefillOpt,
    DtypeOpt,
    EnforceEagerOpt,
    EngineArgOpt,
    GpuMemoryOpt,
    MaxModelLenOpt,
    QuantizationOpt,
    TensorParallelOpt,
)
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
    SeedOpt,
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
    from blend.engines.vllm_options import VllmEngineOptions
    from blend.execute.setup import RunReport
    from blend.pipeline.lines import StageLine
    from blend.plan.stage import PlanOptions

# Plain help (rich_markup_mode=None): click's layout puts a long option name on its own line
# instead of cutting it, and shows no type for flags; errors are plain lines too.
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, rich_markup_mode=None)
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


@app.command(short_help="Read a prompt file into the store (bad rows go to rejects).")
def ingest(
    input_path: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="JSONL, OpenAI batch JSONL, CSV or Parquet: a path, or a URI (s3://, gs://, "
            "hf://, https://).",
        ),
    ],
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


@app.command(short_help="Tokenize a dataset and profile its lengths and prefix sharing.")
def profile(
    dataset: DatasetOpt,
    model: ModelOpt = None,
    snapshot: Annotated[int | None, typer.Option(help="Snapshot (default: latest).")] = None,
    store: StoreOpt = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Processes that tokenize (default: one per core; with --ray: Ray actors, "
            "default one per CPU of the cluster).",
        ),
    ] = None,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Tokenize on Ray actors ($RAY_ADDRESS, else a local cluster): for a dataset "
            "too large for one machine.",
        ),
    ] = False,
) -> None:
    """Tokenize with the model's chat template; SQL profiles of lengths and prefix overlap."""
    opened = writable_store(store)  # before the tokenizer code is imported (seconds)
    model_dir = resolve_model(opened, model)
    from blend.profile.stage import profile_dataset
    from blend.profile.token_batches import TokenizeOptions
    from blend.store.lineage import model_sha256

    try:
        report = profile_dataset(
            opened,
            dataset,
            model_dir,
            snapshot=snapshot,
            model_sha256=model_sha256(model_dir),
            tokenize=TokenizeOptions(workers=workers, ray=ray),
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
    tensor_parallel_size: int | None = None,
    gpu_memory_utilization: float | None = None,
    max_model_len: int | None = None,
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
        tensor_parallel_size=tensor_parallel_size or 1,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
    )


@app.command(short_help="Order a profiled dataset's requests and store the plan.")
def plan(
    dataset: DatasetOpt,
    planner: PlannerOpt = PlannerName.DFS,
    hardware: HardwareOpt = None,
    model_spec: ModelSpecOpt = None,
    snapshot: Annotated[int | None, typer.Option(help="Snapshot (default: latest).")] = None,
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option(help="Requests per checkpoint batch.")] = 256,
    warmup_fraction: WarmupOpt = 0.01,
    search_settings: SearchOpt = True,
    max_num_batched_tokens: TokensOpt = None,
    max_num_seqs: SeqsOpt = None,
    incremental: IncrementalOpt = True,
    model: ModelOpt = None,
    tensor_parallel_size: TensorParallelOpt = None,
    gpu_memory_utilization: GpuMemoryOpt = None,
    max_model_len: MaxModelLenOpt = None,
    store: StoreOpt = None,
) -> None:
    """Order the requests of a profiled dataset and store the plan."""
    opened = writable_store(store)  # before the planner code is imported (seconds)
    model_dir = resolve_model(opened, model)
    from blend.plan.stage import PlanError, plan_dataset
    from blend.store.lineage import model_sha256

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
            tensor_parallel_size,
            gpu_memory_utilization,
            max_model_len,
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


@app.command(short_help="Run a plan through the engine; results to Parquet with lineage.")
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
    tensor_parallel_size: TensorParallelOpt = None,
    dtype: DtypeOpt = None,
    max_model_len: MaxModelLenOpt = None,
    gpu_memory_utilization: GpuMemoryOpt = None,
    quantization: QuantizationOpt = None,
    enforce_eager: EnforceEagerOpt = None,
    enable_chunked_prefill: ChunkedPrefillOpt = None,
    engine_arg: EngineArgOpt = None,
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
    model_dir = resolve_model(opened, model)
    from blend.execute.stage import ExecuteError, ExecuteOptions, execute_plan

    engine_kwargs = _checked_engine_kwargs(
        _vllm_options(
            tensor_parallel_size or header.tensor_parallel_size,
            dtype,
            # not given: the plan's, as it was priced
            header.max_model_len if max_model_len is None else max_model_len,
            header.gpu_memory_utilization
            if gpu_memory_utilization is None
            else gpu_memory_utilization,
            quantization,
            enforce_eager,
            enable_chunked_prefill,
            engine_arg,
        )
    )
    config = _engine_config(
        model_dir,
        max_num_seqs,
        max_num_batched_tokens,
        kv_cache_gib,
        engine,
        engine_kwargs,
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


def _vllm_options(
    tensor_parallel_size: int | None,
    dtype: str | None,
    max_model_len: int | None,
    gpu_memory_utilization: float | None,
    quantization: str | None,
    enforce_eager: bool | None,
    enable_chunked_prefill: bool | None,
    engine_arg: list[str] | None,
) -> VllmEngineOptions:
    """The vLLM engine arguments given on the command line (not yet checked by vLLM)."""
    from blend.engines.vllm_options import EngineOptionsError, VllmEngineOptions, parse_engine_args

    try:
        extra = parse_engine_args(engine_arg or [])
    except EngineOptionsError as exc:
        raise typer.BadParameter(str(exc), param_hint="--engine-arg") from None
    return VllmEngineOptions(
        tensor_parallel_size=tensor_parallel_size if tensor_parallel_size != 1 else None,
        dtype=dtype,
        max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization,
        quantization=quantization,
        enforce_eager=enforce_eager,
        enable_chunked_prefill=enable_chunked_prefill,
        extra=extra,
    )


def _checked_engine_kwargs(options: VllmEngineOptions) -> dict[str, Any]:
    """The vLLM engine arguments given, checked by the installed vLLM before any work
    starts (vLLM imported only when some were given); a one-line error, exit 1."""
    if not options.given:
        return {}
    from blend.engines.vllm_options import (
        EngineOptionsError,
        validated_engine_kwargs,
        vllm_is_cpu_build,
    )

    try:
        return validated_engine_kwargs(options, on_cpu=vllm_is_cpu_build())
    except EngineOptionsError as exc:
        err_console.print(f"[red]engine arguments refused:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


def _engine_config(
    model_dir: Path,
    max_num_seqs: int | None,
    max_num_batched_tokens: int | None,
    kv_cache_gib: float,
    engine: str = "auto",
    engine_kwargs: dict[str, Any] | None = None,
) -> EngineConfig:
    """The engine's config, with the checked vLLM engine arguments (_checked_engine_kwargs)."""
    from blend.engines.base import EngineConfig, EngineName
    from blend.engines.selection import engine_choice
    from blend.engines.vllm_options import with_engine_kwargs

    try:
        name = EngineName(engine)
    except ValueError:
        raise typer.BadParameter(
            f"{engine!r}: expected {', '.join(EngineName)}", param_hint="--engine"
        ) from None
    config = EngineConfig(
        model_dir=model_dir,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        kv_cache_gib=kv_cache_gib,
        engine=name,
    )
    config = with_engine_kwargs(config, engine_kwargs or {})
    if config.tensor_parallel_size > 1:
        try:  # the hetegen engine runs on one GPU (decided without a look at the GPUs)
            engine_choice(config)
        except ValueError as exc:
            err_console.print(f"[red]engine refused:[/red] {escape(str(exc))}")
            raise typer.Exit(1) from None
    return config


@app.command(short_help="The whole pipeline: ingest, profile, plan, execute (no input: the demo).")
def run(
    input_path: Annotated[
        str | None,
        typer.Argument(
            metavar="INPUT",
            help="Input file or URI, e.g. s3://... (default: the bundled demo dataset).",
        ),
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
    seed: SeedOpt = 0,
    incremental: IncrementalOpt = True,
    warmup_fraction: WarmupOpt = 0.01,
    search_settings: SearchOpt = True,
    max_num_batched_tokens: TokensOpt = None,
    max_num_seqs: SeqsOpt = None,
    kv_cache_gib: Annotated[float, typer.Option(help="CPU build: KV cache GiB.")] = 1.0,
    engine: EngineOpt = "auto",
    engines: EnginesOpt = 1,
    results_uri: ResultsUriOpt = None,
    tensor_parallel_size: TensorParallelOpt = None,
    dtype: DtypeOpt = None,
    max_model_len: MaxModelLenOpt = None,
    gpu_memory_utilization: GpuMemoryOpt = None,
    quantization: QuantizationOpt = None,
    enforce_eager: EnforceEagerOpt = None,
    enable_chunked_prefill: ChunkedPrefillOpt = None,
    engine_arg: EngineArgOpt = None,
    store: StoreOpt = None,
) -> None:
    """The whole pipeline: ingest -> profile -> plan -> execute. No arguments: the demo."""
    from blend.ingest import IngestError, RemoteInput, check_input, input_stem
    from blend.store.results import dataset_dir

    given: str | Path | None = None  # a local path or a URI (s3://...), as typed
    if input_path is not None:
        try:  # before the store is touched or a model built: a typo fails at once
            checked = check_input(input_path)
        except IngestError as exc:
            err_console.print(f"[red]run failed:[/red] {escape(str(exc))}")
            raise typer.Exit(1) from None
        given = input_path
    if given is not None and dataset is None:
        try:
            where = checked.shown if isinstance(checked, RemoteInput) else f"file {given}"
            dataset = validate_name(input_stem(given), NameKind.DATASET, where)
        except InvalidNameError as exc:
            hint = f"{exc}; name the dataset with --dataset"
            raise typer.BadParameter(hint, param_hint="--dataset") from None
    engine_kwargs = _checked_engine_kwargs(
        _vllm_options(
            tensor_parallel_size,
            dtype,
            max_model_len,
            gpu_memory_utilization,
            quantization,
            enforce_eager,
            enable_chunked_prefill,
            engine_arg,
        )
    )
    opened = writable_store(store)
    model_dir = resolve_model(opened, model)  # before any stage: a missing model writes nothing
    # Imported once the input, the store and the model are known good: the engine code takes
    # seconds.
    from blend.engines.model_source import model_source
    from blend.execute.stage import ExecuteOptions
    from blend.pipeline.chain import PipelineOptions, pipeline_input, run_pipeline

    if given is None:
        given, dataset = pipeline_input(opened, None, dataset)
        console.print(f"demo input: {escape(str(given))}")
    assert dataset is not None  # named above, or the demo's
    dataset_dir(opened.results_dir, dataset)  # a planted link: refused before any stage runs
    console.print(f"model: {escape(model_source(model_dir).describe())}")
    options = _plan_options(
        planner,
        seed,
        model_spec,
        hardware,
        warmup_fraction,
        search_settings,
        max_num_batched_tokens,
        max_num_seqs,
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
    )
    engine_config = _engine_config(model_dir, None, None, kv_cache_gib, engine, engine_kwargs)
    printers: dict[str, Any] = {
        "ingest": _print_ingest,
        "profile": _print_profile,
        "plan": _print_plan,
        "execute": _print_run,
    }
    with _execute_progress() as progress:
        report = run_pipeline(
            opened,
            engine_config,
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


app.command("query", short_help="Read the store with one read-only SQL statement.")(query_command)


@app.command(short_help="Check that every result part can be read (--repair: quarantine).")
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
    from blend.pipeline.lines import ingest_lines

    _print_lines(ingest_lines(r))


def _print_profile(r: Any) -> None:
    from blend.pipeline.lines import profile_lines

    _print_lines(profile_lines(r))


def _print_plan(r: Any) -> None:
    from blend.pipeline.lines import plan_lines

    _print_lines(plan_lines(r))


def _print_run(r: RunReport) -> None:
    from blend.pipeline.lines import run_lines

    _print_lines(run_lines(r))


def _print_lines(lines: list[StageLine]) -> None:
    """A stage's lines (blend/pipeline/lines.py, which the Prefect flows log too): the
    stage's name in bold, warnings in yellow."""
    from rich.text import Text

    for i, line in enumerate(lines):
        text = Text(line.text, style="yellow" if line.warning else "")
        if i == 0:
            text.stylize("bold", 0, line.text.find(" "))
        console.print(text)


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


app.command(
    "simulate", short_help="Simulate a plan on a workload file against the bounds T_seq and T_opt."
)(simulate_command)
app.command("lp", short_help="The fluid LP of a dataset's request classes, explained.")(lp_command)
app.add_typer(hetegen_app, name="hetegen")
app.command("capacity", short_help="How many engines a dataset needs to finish by a deadline.")(
    capacity_command
)
app.command(
    "export", short_help="Write a dataset's answers to one file: OpenAI Batch, JSONL, Parquet, CSV."
)(export_command)


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
