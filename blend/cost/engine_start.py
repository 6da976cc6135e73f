"""What starting one engine costs before its first step: measured where blend has run the
model, else estimated from the model's weight bytes.

A makespan from the simulator counts engine steps only; a real run first starts the engine
(process, model load, compilation, CUDA graphs on a GPU), which on the demo is most of the
wall time (docs/measurements.md: engine start 10.9 s of a 15.4 s execute stage). Engines of a
data-parallel run start side by side, so each prediction carries one start.

Measured: the runs table records each execution's engine start seconds (summed over its
starts: the first, one per restart after a failure, and the re-plan's restart); per start,
the median over the model's recent runs, their range as the band. Estimated: the weights
per GPU read at WEIGHT_LOAD_BYTES_S plus a fixed start, a range of half to twice that.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from blend.cost.model import CostModel

# Where no start was measured: typical figures, not measured on the machine priced.
WEIGHT_LOAD_BYTES_S = 2e9  # safetensors from a local disk into device memory (bytes/s)
# vLLM on a GPU: process start, profiling run, torch.compile (cache warm) and CUDA graph
# capture, before any weight is counted: typically 20-60 s for vLLM's V1 engine.
GPU_FIXED_START_S = 30.0
# vLLM's CPU build in process: 7.5-11 s on a quiet 2-core machine for the tiny model, 14.6-
# 27.9 s under load (docs/measurements.md, bench/engine_start.py).
CPU_FIXED_START_S = 10.0
ESTIMATE_RANGE = (0.5, 2.0)  # an estimate's low and high, as factors of it


@dataclass(frozen=True, slots=True)
class EngineStart:
    """One engine's start (s) before its first step, with a range and where it comes from."""

    seconds: float
    low_s: float
    high_s: float
    measured: bool  # True: from earlier runs; False: an estimate
    basis: str  # how it was found, in words

    def describe(self) -> str:
        """E.g. "11.2 s per engine, measured (median of 3 earlier runs ...: 10.9-14.6 s)"."""
        kind = "measured" if self.measured else "estimated, not measured"
        return f"{self.seconds:,.1f} s per engine, {kind} ({self.basis})"


def estimated_engine_start(cost: CostModel) -> EngineStart:
    """The start of an engine of `cost`'s model on its hardware, from the weights each GPU
    (or the CPU) loads and a fixed start (the module's constants)."""
    hardware = cost.hardware
    fixed = CPU_FIXED_START_S if hardware.device == "cpu" else GPU_FIXED_START_S
    per_device = cost.model.weight_bytes / max(1, cost.tensor_parallel_size)
    load = per_device / WEIGHT_LOAD_BYTES_S
    seconds = fixed + load
    low, high = ESTIMATE_RANGE
    return EngineStart(
        seconds=seconds,
        low_s=seconds * low,
        high_s=seconds * high,
        measured=False,
        basis=(
            f"{per_device / 1e9:,.2f} GB of weights at {WEIGHT_LOAD_BYTES_S / 1e9:g} GB/s + "
            f"{fixed:g} s fixed start of vLLM on {'a CPU' if hardware.device == 'cpu' else 'a GPU'}"
            f"; could be {low:g}x to {high:g}x that"
        ),
    )


def measured_engine_start(per_start_s: Sequence[float], what: str) -> EngineStart | None:
    """The median of measured starts (s; None when there are none), their range as its
    band; `what` names where they come from ("earlier runs of this model in this store")."""
    values = sorted(s for s in per_start_s if s > 0)
    if not values:
        return None
    runs = "run" if len(values) == 1 else "runs"
    return EngineStart(
        seconds=statistics.median(values),
        low_s=values[0],
        high_s=values[-1],
        measured=True,
        basis=f"median of {len(values)} {runs} {what}: {values[0]:,.1f}-{values[-1]:,.1f} s",
    )
