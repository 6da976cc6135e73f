"""`blend simulate`: plan a workload file and simulate it the way the pipeline runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from blend.cli.engine_options import GpuMemoryOpt, MaxModelLenOpt, TensorParallelOpt
from blend.cli.options import HardwareNameOpt, JsonOpt, ModelSpecNameOpt
from blend.cost.model import (
    CostModel,
    load_hardware,
    load_model_spec,
    with_memory_utilization,
)
from blend.engines.settings import EngineSettings, SettingsSource
from blend.planners import PlannerName
from blend.simulate.io import WorkloadError, load_workload, within_context, write_order
from blend.simulate.pipeline import DEFAULT_MAX_TOKENS, SimulatedEngine
from blend.simulate.run import SimulationReport, default_settings, plan_and_simulate

CPU_BLOCK_SIZE = 128  # vLLM's CPU build uses 128-token KV blocks; GPU builds 16


def simulate_command(
    requests: Annotated[
        Path,
        typer.Option(
            "--requests",
            help="Parquet or JSONL: request_id, prompt_token_ids or prompt, output_len "
            "[, max_tokens]. Text prompts count one token per UTF-8 byte.",
        ),
    ],
    planner: Annotated[PlannerName, typer.Option(help="The planner.")],
    model_spec: ModelSpecNameOpt,
    hardware: HardwareNameOpt,
    seed: Annotated[int, typer.Option(help="Seed for randomised planners and the warm-up.")] = 0,
    plan_out: Annotated[
        Path | None,
        typer.Option(
            "--plan-out", help="Write the order the engine was fed here (.parquet or .csv)."
        ),
    ] = None,
    oracle_lengths: Annotated[
        bool,
        typer.Option("--oracle-lengths", help="Let the planner see the true output lengths."),
    ] = False,
    default_max_tokens: Annotated[
        int,
        typer.Option(
            "--default-max-tokens",
            help="Output limit of requests when the file has no max_tokens column.",
        ),
    ] = DEFAULT_MAX_TOKENS,
    max_num_batched_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-num-batched-tokens",
            help="Tokens per step (default: vLLM's offline default for the hardware).",
        ),
    ] = None,
    max_num_seqs: Annotated[
        int | None,
        typer.Option(
            "--max-num-seqs",
            help="Running requests at most (default: vLLM's offline default for the hardware).",
        ),
    ] = None,
    search_settings: Annotated[
        bool,
        typer.Option(
            "--search-settings",
            help="Choose the engine settings as the pipeline does after the warm-up "
            "(simulating candidates at the estimated lengths).",
        ),
    ] = False,
    block_size: Annotated[
        int | None,
        typer.Option(help="KV block size in tokens (default 16; 128 on cpu-local)."),
    ] = None,
    kv_capacity_tokens: Annotated[
        int | None,
        typer.Option(help="KV cache size in tokens (default: from the cost model)."),
    ] = None,
    chunked_prefill: Annotated[
        bool, typer.Option(help="Split long prompts across steps (vLLM default).")
    ] = True,
    offload: Annotated[
        str,
        typer.Option(
            help="Model larger than the GPU: auto (HeteGen's step cost when the weights do not "
            "fit), hetegen (always) or none (refuse).",
        ),
    ] = "auto",
    tensor_parallel_size: TensorParallelOpt = None,
    gpu_memory_utilization: GpuMemoryOpt = None,
    max_model_len: MaxModelLenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Plan a workload and simulate the engine on it; compare with the bounds T_seq and T_opt."""
    from blend.cost.offload.pricing import with_offload
    from blend.cost.parallel import tensor_parallel

    try:
        workload, n_over_length = within_context(load_workload(requests), max_model_len)
        machine = with_memory_utilization(load_hardware(hardware), gpu_memory_utilization)
        one_gpu = CostModel(load_model_spec(model_spec), machine)
        if (tensor_parallel_size or 1) > 1:  # vLLM across GPUs; hetegen runs on one
            cost = tensor_parallel(one_gpu, tensor_parallel_size or 1)
        else:
            cost = with_offload(one_gpu, offload)
        settings = default_settings(workload, cost, chunked_prefill)
        if max_num_batched_tokens is not None or max_num_seqs is not None:
            settings = EngineSettings(
                max_num_batched_tokens or settings.max_num_batched_tokens,
                max_num_seqs or settings.max_num_seqs,
                chunked_prefill,
                SettingsSource.EXPLICIT,
            )
        engine = SimulatedEngine(
            settings,
            block_size=block_size or (CPU_BLOCK_SIZE if hardware == "cpu-local" else 16),
            kv_capacity_tokens=kv_capacity_tokens,
        )
        report = plan_and_simulate(
            workload,
            planner,
            cost,
            engine,
            seed=seed,
            oracle_lengths=oracle_lengths,
            search=search_settings and settings.source is not SettingsSource.EXPLICIT,
            default_max_tokens=default_max_tokens,
        )
        if plan_out is not None:
            order = report.run.result.admission_order.tolist()
            write_order(plan_out, [workload.requests[i].request_id for i in order])
    except (WorkloadError, ValueError) as exc:
        typer.echo(f"simulate failed: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        priced = {
            "kv_capacity_tokens": kv_capacity_tokens or cost.kv_capacity_tokens,
            "n_over_length": n_over_length,
            "max_model_len": max_model_len,
        }
        typer.echo(json.dumps({**report.to_json(), **priced}))
    else:
        _print_summary(report)
        if n_over_length:
            typer.echo(
                f"{n_over_length} more requests leave no room for output within max_model_len "
                f"{max_model_len}: vLLM refuses them, not simulated"
            )


def _print_summary(report: SimulationReport) -> None:
    data = report.to_json()
    typer.echo(
        f"{data['planner']}: {data['n_requests']} requests, makespan {data['makespan_s']:.1f} s "
        f"({data['throughput_tok_s']:,.0f} tok/s) on {data['max_num_batched_tokens']} tokens x "
        f"{data['max_num_seqs']} seqs ({data['settings_source']}), fed by {data['feed']}; "
        f"{data['fraction_of_t_seq']:.1%} of T_seq {data['t_seq_makespan_s']:.1f} s (the bound "
        f"of vLLM's sequential engine: at least {report.t_seq.n_min_steps:,} steps), "
        f"{data['fraction_of_optimal']:.1%} of T_opt {data['optimal_makespan_s']:.1f} s (an "
        f"engine overlapping GEMMs and attention); prefix sharing "
        f"{data['prefix_sharing_ratio']:.1%} of "
        f"{data['dfs_prefix_sharing_ratio']:.1%} (DFS); {data['n_preemptions']} preemptions; "
        f"planned in {data['plan_seconds']:.2f} s, simulated in {data['simulate_seconds']:.2f} s"
    )
    seq = report.t_seq_gap
    parts = ", ".join(
        f"{name.removesuffix('_s').replace('_', ' ')} {seconds:.1f} s"
        for name, seconds in seq.terms.items()
    )
    typer.echo(f"makespan = {parts} ({seq.n_steps:,} steps; drain {seq.drain_s:.1f} s)")
    gap = report.gap
    parts = ", ".join(
        f"{name.removesuffix('_s').replace('_', ' ')} {seconds:.1f} s"
        for name, seconds in gap.terms.items()
    )
    typer.echo(f"against T_opt: {parts} (bound side: {gap.bound_side})")
    note = data.get("settings_search_note")
    if note:
        typer.echo(f"settings search: {note}")
