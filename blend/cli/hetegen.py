"""`blend hetegen ...`: measure a HeteGen profile, show a placement, the 30B-on-24GB target."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from blend.cli.options import ModelSpecNameOpt
from blend.cli.tables import print_numbers_table
from blend.cost.model import load_model_spec
from blend.cost.offload.hardware_profile import HeteGenProfile, ProfileError

hetegen_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help, as the main command's (blend/cli/__init__.py)
    help="HeteGen: CPU+GPU split execution of models larger than the GPU (docs/hetegen.md).",
    short_help="HeteGen: run models larger than the GPU, split with the CPU.",
)
console = Console(soft_wrap=True)

ProfileOpt = Annotated[
    Path | None,
    typer.Option(
        "--profile",
        help="Profile JSON from `blend hetegen profile` (default: the assumed A10 host).",
    ),
]


def _load_profile(path: Path | None) -> HeteGenProfile:
    from blend.cost.offload.layer_costs import assumed_a10_profile

    try:
        return assumed_a10_profile() if path is None else HeteGenProfile.load(path)
    except ProfileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile") from None


@hetegen_app.command("profile", short_help="Measure this host's CPU and GPU rates for a model.")
def profile_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the profile JSON.")],
    model_spec: ModelSpecNameOpt = "llama-3.1-8b",
    cpu_budget_s: Annotated[
        float, typer.Option(help="Seconds for all CPU GEMM timings together.", min=0.1)
    ] = 4.0,
    cpu_dtype: Annotated[str, typer.Option(help="dtype of the CPU GEMMs.")] = "bfloat16",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.", min=1)] = None,
    name: Annotated[str, typer.Option(help="The profile's name.")] = "local",
) -> None:
    """Measure CPU GEMM rates at batch 1..32 (and, with CUDA, host-to-device bandwidth and
    GPU GEMM rates) for the model's layer shapes; write them as JSON."""
    from blend.hetegen.profiler import ProfileOptions, measure_profile

    options = ProfileOptions(cpu_budget_s=cpu_budget_s, cpu_dtype=cpu_dtype, threads=threads)
    profile = measure_profile(load_model_spec(model_spec), options, name=name)
    profile.save(out)
    rows = [
        (
            str(batch),
            f"{rate / 1e9:.2f}",
            "-" if (gpu := profile.gpu_weights_per_s.get(batch)) is None else f"{gpu / 1e9:.1f}",
        )
        for batch, rate in sorted(profile.cpu_weights_per_s.items())
    ]
    print_numbers_table(
        console,
        ("batch", "CPU Gweights/s", "GPU Gweights/s"),
        rows,
        title=f"HeteGen profile {name!r} -> {out}",
    )
    h2d = profile.h2d_bytes_s
    console.print("host-to-device: " + ("no CUDA" if h2d is None else f"{h2d / 1e9:.1f} GB/s"))


@hetegen_app.command(
    "import-microbench", short_help="Make a profile from a GPU microbenchmark result."
)
def import_microbench_command(
    result: Annotated[
        Path, typer.Argument(metavar="RESULT_JSON", help="A bench/gpu_microbench.py JSON result.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Where to write the profile JSON.")],
    cpu_dtype: Annotated[str, typer.Option(help="dtype of the CPU GEMMs to use.")] = "bfloat16",
) -> None:
    """Make a profile from a GPU microbenchmark result (CPU GEMMs, pinned copies, GEMMs)."""
    from blend.hetegen.microbench_profile import profile_from_microbench

    try:
        profile = profile_from_microbench(result, cpu_dtype)
    except ProfileError as exc:
        raise typer.BadParameter(str(exc), param_hint="RESULT") from None
    profile.save(out)
    console.print(f"wrote {out}: {profile.name}, batches {sorted(profile.cpu_weights_per_s)}")


@hetegen_app.command(
    "place", short_help="Print which layers stay on the GPU and how the rest split."
)
def place_command(
    gpu_budget_gib: Annotated[
        float, typer.Option(help="GPU memory for resident linear weights (GiB).", min=0)
    ],
    model_spec: ModelSpecNameOpt = "llama-30b",
    profile: ProfileOpt = None,
    batch: Annotated[int, typer.Option(help="Decode batch size.", min=1)] = 1,
) -> None:
    """Print the placement: resident layers and each offloaded layer's CPU share."""
    from blend.cost.offload.placement import place, print_placement
    from blend.cost.offload.shapes import linear_shapes

    rates = _load_profile(profile)
    shapes = linear_shapes(load_model_spec(model_spec))
    print_placement(place(shapes, int(gpu_budget_gib * 2**30), rates, batch), console)


@hetegen_app.command(
    "target", short_help="HeteGen against full weight streaming (30B on a 24 GB GPU)."
)
def target_command(profile: ProfileOpt = None) -> None:
    """HeteGen against full weight streaming: a Llama-30B-like model on an A10-like 24 GB GPU
    (CPU rates from --profile, else the stated assumption), decode at 576 tokens of context."""
    from blend.cost.offload.layer_costs import thirty_b_on_24gb

    rows = thirty_b_on_24gb(None if profile is None else _load_profile(profile))
    print_numbers_table(
        console,
        ("batch", "hetegen", "streaming", "speedup", "resident GiB", "alpha", "fits"),
        [
            (
                str(row.batch),
                f"{row.hetegen.step_s * 1e3:,.0f}",
                f"{row.streaming.step_s * 1e3:,.0f}",
                f"{row.speedup:.2f}x",
                f"{row.hetegen.resident_bytes / 2**30:.1f}",
                f"{row.hetegen.mean_alpha:.2f}",
                "yes" if row.hetegen.fits else "no: KV",
            )
            for row in rows
        ],
        text_columns=("fits",),
        title="llama-30b on a10-24g: decode step (ms) and speedup over streaming",
    )
