"""Measure a HeteGen hardware profile on this machine: CPU GEMM rates at each batch, and,
where CUDA is present, the pinned host-to-device bandwidth and GPU GEMM rates."""

from __future__ import annotations

import functools
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from blend.cost.model import ModelSpec
from blend.cost.offload.hardware_profile import HeteGenProfile
from blend.cost.offload.shapes import linear_shapes

if TYPE_CHECKING:
    import torch

DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True, slots=True)
class ProfileOptions:
    batches: tuple[int, ...] = DEFAULT_BATCHES
    cpu_dtype: str = "bfloat16"  # dtype the CPU part of split layers computes in
    gpu_dtype: str = "float16"
    cpu_budget_s: float = 4.0  # wall time for all CPU GEMM points together (s)
    gpu_budget_s: float = 4.0  # wall time for all GPU GEMM points together (s)
    h2d_bytes: int = 256 * 2**20  # size of the timed host-to-device copy
    threads: int | None = None  # torch CPU threads (None: torch's default)


def decoder_shapes(spec: ModelSpec) -> list[tuple[int, int]]:
    """The distinct (in_features, out_features) of one decoder layer's linear layers."""
    seen: dict[tuple[int, int], None] = {}
    for shape in linear_shapes(spec):
        if shape.name.startswith("layers.0."):
            seen[(shape.in_features, shape.out_features)] = None
    return list(seen)


def measure_profile(
    spec: ModelSpec, options: ProfileOptions | None = None, name: str = "local"
) -> HeteGenProfile:
    """Time F.linear for the model's decoder shapes at every batch on the CPU (and GPU)."""
    import torch

    options = options or ProfileOptions()
    shapes = decoder_shapes(spec)
    threads_before = torch.get_num_threads()
    threads = options.threads or threads_before
    torch.set_num_threads(threads)
    try:
        cpu_points = _gemm_points(
            shapes,
            options.batches,
            _dtype(options.cpu_dtype),
            torch.device("cpu"),
            options.cpu_budget_s,
            _wall_timer,
        )
    finally:  # the caller's setting again (a process-wide one)
        torch.set_num_threads(threads_before)
    h2d, gpu_points, gpu_name = None, [], ""
    if torch.cuda.is_available():
        device = torch.device("cuda")
        gpu_name = torch.cuda.get_device_name(device)
        h2d = _h2d_bytes_s(options.h2d_bytes)
        gpu_points = _gemm_points(
            shapes,
            options.batches,
            _dtype(options.gpu_dtype),
            device,
            options.gpu_budget_s,
            _cuda_timer,
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return HeteGenProfile(
        name=name,
        cpu_weights_per_s=_rates(cpu_points),
        h2d_bytes_s=h2d,
        gpu_weights_per_s=_rates(gpu_points),
        cpu_threads=threads,
        cpu_dtype=options.cpu_dtype,
        gpu_dtype=options.gpu_dtype,
        gpu_name=gpu_name,
        source=(
            f"blend hetegen profile, {stamp}, {platform.node() or 'this machine'}: "
            f"F.linear medians for {spec.name}'s decoder shapes {shapes}, torch "
            f"{torch.__version__}, {threads} CPU threads"
        ),
        points=cpu_points + gpu_points,
    )


def _dtype(name: str) -> torch.dtype:
    import torch

    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"unknown floating-point dtype {name!r} (e.g. bfloat16, float16)")
    return dtype


Timer = Callable[[Callable[[], Any]], float]


def _wall_timer(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _cuda_timer(call: Callable[[], Any]) -> float:
    import torch

    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    begin.record()
    call()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / 1e3


def _gemm_points(
    shapes: list[tuple[int, int]],
    batches: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    budget_s: float,
    timer: Timer,
) -> list[dict[str, Any]]:
    """Median seconds of F.linear per (shape, batch), each point within an equal share of the
    budget (one warm-up call, then timed calls until the share is spent, at least one)."""
    import torch
    import torch.nn.functional as F

    share = budget_s / max(1, len(shapes) * len(batches))
    points = []
    for n_in, n_out in shapes:
        weight = torch.empty(n_out, n_in, dtype=dtype, device=device).uniform_(-0.02, 0.02)
        for batch in batches:
            x = torch.randn(batch, n_in, dtype=dtype, device=device)
            with torch.inference_mode():
                F.linear(x, weight)  # warm-up: kernel choice, caches
                times: list[float] = []
                deadline = time.perf_counter() + share
                while not times or (time.perf_counter() < deadline and len(times) < 50):
                    times.append(timer(functools.partial(F.linear, x, weight)))
            seconds = statistics.median(times)
            points.append(
                {
                    "device": device.type,
                    "dtype": str(dtype).removeprefix("torch."),
                    "batch": batch,
                    "in_features": n_in,
                    "out_features": n_out,
                    "seconds": seconds,
                    "reps": len(times),
                    "weights_per_s": n_in * n_out / seconds,
                }
            )
        del weight
    return points


def _rates(points: list[dict[str, Any]]) -> dict[int, float]:
    """Per batch: all shapes' weights over all their seconds (a layer's mix of shapes)."""
    weights: dict[int, float] = {}
    seconds: dict[int, float] = {}
    for p in points:
        b = int(p["batch"])
        weights[b] = weights.get(b, 0.0) + p["in_features"] * p["out_features"]
        seconds[b] = seconds.get(b, 0.0) + p["seconds"]
    return {b: weights[b] / seconds[b] for b in sorted(weights)}


def _h2d_bytes_s(n_bytes: int, reps: int = 5) -> float:
    """Median bandwidth of a pinned host -> device copy of n_bytes (wall time around sync)."""
    import torch

    host = torch.empty(n_bytes, dtype=torch.uint8).pin_memory()
    device = torch.empty_like(host, device="cuda")
    device.copy_(host, non_blocking=True)  # warm-up
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        device.copy_(host, non_blocking=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return n_bytes / statistics.median(times)
