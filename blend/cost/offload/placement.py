"""Which linear layers stay on the GPU, and each offloaded layer's CPU share alpha.

An offloaded layer with N weights at batch b computes a share alpha of its output columns on
the CPU (c = seconds per weight there) while the rest is copied to the GPU and computed there
(g = seconds per weight: copy + GPU GEMM), both at once:
    T(alpha) = max(alpha N c, (1 - alpha) N g),  smallest at alpha* = g / (c + g),
where T = N c g / (c + g). A layer kept on the GPU costs N g_gpu. With GPU memory to spare,
layers become resident greedily by benefit: seconds saved per byte of GPU memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from blend.cost.offload.hardware_profile import HeteGenProfile
from blend.cost.offload.shapes import LinearShape

if TYPE_CHECKING:  # rich is imported where tables are made (the GPU bench runs without it)
    from rich.console import Console
    from rich.table import Table


@dataclass(frozen=True, slots=True)
class LayerPlacement:
    """One linear layer's placement and its predicted time at the placement's batch."""

    name: str
    in_features: int
    out_features: int
    weight_bytes: int
    resident: bool  # all its weights live on the GPU
    alpha: float  # share of output columns computed on the CPU (0 when resident)
    cpu_s: float  # CPU part's time (s)
    transfer_s: float  # copy of the GPU part's weights (s)
    gpu_s: float  # GPU part's GEMM (s)

    @property
    def cpu_columns(self) -> int:
        """Output columns of the CPU part (the rest are the GPU part's)."""
        return cpu_columns(self.out_features, self.alpha)

    @property
    def time_s(self) -> float:
        """The layer's predicted time: both parts run at once."""
        return max(self.cpu_s, self.transfer_s + self.gpu_s)


@dataclass(frozen=True, slots=True)
class Placement:
    batch: int
    gpu_budget_bytes: int  # GPU memory allowed for resident linear weights
    layers: list[LayerPlacement]

    @property
    def resident_bytes(self) -> int:
        return sum(layer.weight_bytes for layer in self.layers if layer.resident)

    @property
    def time_s(self) -> float:
        """Predicted time of all linear layers of one step (s), run one after another."""
        return sum(layer.time_s for layer in self.layers)

    def by_name(self) -> dict[str, LayerPlacement]:
        return {layer.name: layer for layer in self.layers}


def cpu_columns(out_features: int, alpha: float) -> int:
    """Output columns a share alpha gives the CPU (rounded to the nearest column)."""
    return min(out_features, max(0, round(alpha * out_features)))


def balanced_alpha(cpu_s_per_weight: float, gpu_side_s_per_weight: float) -> float:
    """alpha* = g / (c + g): the CPU share at which both parts finish together, in [0, 1]."""
    if cpu_s_per_weight < 0 or gpu_side_s_per_weight < 0:
        raise ValueError("seconds per weight must be >= 0")
    total = cpu_s_per_weight + gpu_side_s_per_weight
    return 0.0 if total == 0 else gpu_side_s_per_weight / total


def offloaded_layer(
    shape: LinearShape, profile: HeteGenProfile, batch: int, alpha: float | None = None
) -> LayerPlacement:
    """An offloaded layer at `alpha` (None: the balanced alpha*, rounded to whole columns)."""
    c = profile.cpu_s(1.0, batch)
    g = profile.h2d_s(shape.dtype_bytes) + profile.gpu_s(1.0, batch)
    if alpha is None:
        alpha = balanced_alpha(c, g)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{shape.name}: alpha {alpha} is outside [0, 1]")
    on_cpu = cpu_columns(shape.out_features, alpha)
    cpu_weights = on_cpu * shape.in_features
    gpu_weights = shape.n_weights - cpu_weights
    return LayerPlacement(
        name=shape.name,
        in_features=shape.in_features,
        out_features=shape.out_features,
        weight_bytes=shape.weight_bytes,
        resident=False,
        alpha=on_cpu / shape.out_features,
        cpu_s=profile.cpu_s(cpu_weights, batch),
        transfer_s=profile.h2d_s(gpu_weights * shape.dtype_bytes),
        gpu_s=profile.gpu_s(gpu_weights, batch),
    )


def resident_layer(shape: LinearShape, profile: HeteGenProfile, batch: int) -> LayerPlacement:
    return LayerPlacement(
        name=shape.name,
        in_features=shape.in_features,
        out_features=shape.out_features,
        weight_bytes=shape.weight_bytes,
        resident=True,
        alpha=0.0,
        cpu_s=0.0,
        transfer_s=0.0,
        gpu_s=profile.gpu_s(shape.n_weights, batch),
    )


def place(
    shapes: list[LinearShape],
    gpu_budget_bytes: int,
    profile: HeteGenProfile,
    batch: int,
    fixed_alpha: float | None = None,
) -> Placement:
    """Fill the budget with the layers of the largest benefit (seconds saved per byte; ties:
    larger layers first, then model order), offload the rest at alpha* (or `fixed_alpha`:
    0 streams every offloaded layer whole, FlexGen-style)."""
    if gpu_budget_bytes < 0:
        raise ValueError(
            f"GPU budget for weights is {gpu_budget_bytes} bytes: the KV cache and activation "
            "reserve do not leave room on this GPU"
        )
    names = [s.name for s in shapes]
    if len(set(names)) != len(names):
        raise ValueError("layer names repeat in the shapes given")
    offloaded = [offloaded_layer(s, profile, batch, fixed_alpha) for s in shapes]
    resident = [resident_layer(s, profile, batch) for s in shapes]

    def benefit(i: int) -> tuple[float, int, int]:
        saved = offloaded[i].time_s - resident[i].time_s
        return (-saved / max(1, shapes[i].weight_bytes), -shapes[i].weight_bytes, i)

    chosen: set[int] = set()
    free = gpu_budget_bytes
    for i in sorted(range(len(shapes)), key=benefit):
        if offloaded[i].time_s > resident[i].time_s and shapes[i].weight_bytes <= free:
            chosen.add(i)
            free -= shapes[i].weight_bytes
    layers = [resident[i] if i in chosen else offloaded[i] for i in range(len(shapes))]
    return Placement(batch=batch, gpu_budget_bytes=gpu_budget_bytes, layers=layers)


def all_resident(shapes: list[LinearShape], profile: HeteGenProfile, batch: int) -> Placement:
    """Every layer on the GPU (the bound when the model fits), whatever the memory."""
    layers = [resident_layer(s, profile, batch) for s in shapes]
    return Placement(batch, sum(s.weight_bytes for s in shapes), layers)


def placement_table(placement: Placement, title: str = "HeteGen placement") -> Table:
    """One row per layer: bytes, resident or alpha, the parts' times and the layer's (ms)."""
    from rich.table import Table

    table = Table(title=f"{title} (batch {placement.batch})")
    for column in ("layer", "MiB", "where", "cpu ms", "copy ms", "gpu ms", "time ms"):
        table.add_column(column, justify="left" if column in ("layer", "where") else "right")
    for layer in placement.layers:
        where = "resident" if layer.resident else f"alpha {layer.alpha:.3f}"
        table.add_row(
            layer.name,
            f"{layer.weight_bytes / 2**20:,.1f}",
            where,
            f"{layer.cpu_s * 1e3:.3f}",
            f"{layer.transfer_s * 1e3:.3f}",
            f"{layer.gpu_s * 1e3:.3f}",
            f"{layer.time_s * 1e3:.3f}",
        )
    table.caption = (
        f"resident {placement.resident_bytes / 2**30:.2f} of "
        f"{placement.gpu_budget_bytes / 2**30:.2f} GiB; linear layers "
        f"{placement.time_s * 1e3:.2f} ms a step"
    )
    return table


def print_placement(placement: Placement, console: Console | None = None) -> None:
    from rich.console import Console

    (console or Console()).print(placement_table(placement))
