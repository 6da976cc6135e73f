"""`blend capacity`: how many engines a profiled dataset needs to finish by a deadline."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from blend.cli.engine_options import GpuMemoryOpt, MaxModelLenOpt, TensorParallelOpt
from blend.cli.options import DatasetOpt, HardwareOpt, JsonOpt, ModelSpecOpt, StoreOpt
from blend.plan.capacity import (
    DRAWS,
    SAMPLE_LIMIT,
    CapacityError,
    CapacityReport,
    at_clock,
    dataset_capacity,
    deadline_after,
)
from blend.store.database import Store, StoreNotReadableError, default_store_dir


def capacity_command(
    dataset: DatasetOpt,
    deadline: Annotated[
        str, typer.Option(help="Time of day the run must be done by, HH:MM (local time).")
    ],
    start: Annotated[
        str | None,
        typer.Option(help="Time of day the run starts, HH:MM (default: now)."),
    ] = None,
    model_spec: ModelSpecOpt = None,
    hardware: HardwareOpt = None,
    max_engines: Annotated[
        int, typer.Option("--max-engines", help="Engine counts tried: 1, 2, 4, ... up to this.")
    ] = 8,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model folder or Hugging Face id in the local cache: its config.json gives "
            "the cost model without --model-spec, and its earlier results of the dataset seed "
            "the length estimates.",
        ),
    ] = None,
    tensor_parallel_size: TensorParallelOpt = None,
    gpu_memory_utilization: GpuMemoryOpt = None,
    max_model_len: MaxModelLenOpt = None,
    sample_limit: Annotated[
        int,
        typer.Option(
            "--sample-limit", help="Requests simulated at most (larger datasets: a sample)."
        ),
    ] = SAMPLE_LIMIT,
    draws: Annotated[
        int,
        typer.Option(help="Draws of the output lengths around their estimates, averaged."),
    ] = DRAWS,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Predict the makespan on 1, 2, 4, ... engines - one engine start (measured by the
    model's earlier runs here, else estimated) plus the simulator's run with the pipeline's
    own length estimates - and the fewest engines that meet the deadline; says when the
    hardware priced is not this machine's."""
    from blend.cost.resolve import resolve_cost
    from blend.engines.model_source import ModelNotFoundError, locate_model
    from blend.store.lineage import model_sha256

    try:
        now = datetime.now().astimezone()
        begin = now if start is None else at_clock(now, start, "--start")
        model_dir = locate_model(model).path if model is not None else None
        # Not Store.open: reading a profile creates nothing, not even the store folder.
        opened = Store((store if store is not None else default_store_dir()).resolve())
        if model_dir is None and model_spec is None:
            model_dir = _demo_model(opened)  # what `blend run` without --model runs
        # one engine spans tensor_parallel_size GPUs: k engines use k times as many
        cost = resolve_cost(
            model_spec, hardware, model_dir, tensor_parallel_size or 1, gpu_memory_utilization
        )
        report = dataset_capacity(
            opened,
            dataset,
            cost,
            start=begin,
            deadline=deadline_after(begin, deadline),
            model_sha256=model_sha256(model_dir) if model_dir is not None else None,
            max_engines=max_engines,
            sample_limit=sample_limit,
            draws=draws,
            max_model_len=max_model_len,
        )
    except (CapacityError, ValueError, StoreNotReadableError, ModelNotFoundError) as exc:
        typer.echo(f"capacity failed: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    else:
        _print(report)


def _demo_model(store: Store) -> Path | None:
    """The demo model of the store, if a run made it (None: the user must name a model)."""
    from blend.demo.model import TinyModelShape

    folder = store.models_dir / TinyModelShape().name
    return folder if (folder / "config.json").is_file() else None


def _print(report: CapacityReport) -> None:
    typer.echo(f"{report.dataset} (snapshot {report.snapshot}):")
    for line in report.summary():
        typer.echo(line)
