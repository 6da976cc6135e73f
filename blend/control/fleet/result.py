"""What a fleet simulation returns: revenue, per-class outcomes, and the state over time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blend.control.fleet.policies import FleetPolicyKind


@dataclass(frozen=True, slots=True)
class ClassOutcome:
    """One class over the whole run (counts) and after the warm-up (rates, means)."""

    name: str
    arrived: int
    prefilled: int
    completed: int
    abandoned_waiting: int  # left the prefill queue
    abandoned_buffered: int  # left a decode buffer
    in_system: int  # at the horizon: waiting, prefilling, buffered or decoding
    completions_per_gpu_s: float  # after the warm-up
    served_fraction: float  # completions / arrivals after the warm-up (0 when none arrived)
    mean_tpot_s: float  # mean decode time per output token after the warm-up (0 if none)
    mean_waiting: float  # time-mean prefill queue after the warm-up (requests, all GPUs)
    mean_prefilling: float  # time-mean X_i after the warm-up


@dataclass(frozen=True, slots=True)
class FleetTrace:
    """The state sampled every FleetConfig.sample_interval_s (rows: samples, columns: classes)."""

    time_s: np.ndarray  # (S,)
    waiting: np.ndarray  # (S, K) prefill queue
    buffered: np.ndarray  # (S, K) decode buffers
    prefilling: np.ndarray  # (S, K) prefills in service X
    decoding_mixed: np.ndarray  # (S,) decodes on mixed engines
    decoding_solo: np.ndarray  # (S,) decodes on solo engines


@dataclass(frozen=True, slots=True)
class FleetResult:
    """One simulated run of a policy on n engines."""

    policy: FleetPolicyKind
    engines: int
    mixed_engines: int
    measured_s: float  # horizon - warm-up: the window the rates are over
    revenue_per_gpu_s: float  # bundled: sum of c_p P + c_d D of measured completions / n / s
    per_phase_revenue_per_gpu_s: float  # c_p P at each prefill end + c_d D at each decode end
    classes: tuple[ClassOutcome, ...]
    mean_buffered: float  # time-mean decode buffer after the warm-up (requests, all GPUs)
    peak_buffered: int  # largest decode buffer seen (samples)
    trace: FleetTrace
