"""Run a fleet policy on n simulated engines (kernel.py) and read the result back.

Classes, iteration model and prices are the fluid LP's (ClassSpec, FluidParams, Prices);
a class's requests all have its (P_i, D_i), rounded to whole tokens, and arrive as a
Poisson process of rate n lambda_i. Seeded: the same inputs give the same result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from blend.control.fleet import kernel as k
from blend.control.fleet.policies import FleetPolicy, Gate, Router
from blend.control.fleet.result import ClassOutcome, FleetResult, FleetTrace
from blend.control.fluid_lp import ClassSpec, FluidParams, Prices

_GATES = {Gate.TARGET: k.GATE_TARGET, Gate.PRIORITY: k.GATE_PRIORITY, Gate.FCFS: k.GATE_FCFS}
_ROUTERS = {
    Router.SOLO_FIRST: k.ROUTE_SOLO_FIRST,
    Router.SPLIT: k.ROUTE_SPLIT,
    Router.LOCAL: k.ROUTE_LOCAL,
}


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """How long to simulate and what to measure."""

    horizon_s: float  # simulated time (s)
    warmup_s: float  # rates and means count only after this (s)
    seed: int = 0
    sample_interval_s: float = 1.0  # the trace's spacing (s)

    def __post_init__(self) -> None:
        if not 0 <= self.warmup_s < self.horizon_s:
            raise ValueError(
                f"FleetConfig: need 0 <= warmup_s < horizon_s, got warmup_s={self.warmup_s}, "
                f"horizon_s={self.horizon_s}"
            )
        if self.sample_interval_s <= 0:
            raise ValueError(
                f"FleetConfig.sample_interval_s must be > 0, got {self.sample_interval_s}"
            )


def simulate_fleet(
    classes: Sequence[ClassSpec],
    params: FluidParams,
    prices: Prices,
    policy: FleetPolicy,
    config: FleetConfig,
) -> FleetResult:
    """Simulate policy on policy.engines engines from an empty system to config.horizon_s."""
    if len(policy.gate_target) != len(classes):
        raise ValueError(
            f"simulate_fleet: the policy has {len(policy.gate_target)} classes, "
            f"the workload {len(classes)}"
        )
    state = _initial_state(classes, params, prices, policy, config)
    k.run(state, config.seed)
    return _result(state, classes, policy, config)


def _arrivals(
    classes: Sequence[ClassSpec], engines: int, config: FleetConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson arrivals of every class on [0, horizon), merged in time order."""
    rng = np.random.default_rng(config.seed)
    times, labels = [], []
    for i, c in enumerate(classes):
        count = rng.poisson(c.arrival_rate * engines * config.horizon_s)
        times.append(rng.uniform(0.0, config.horizon_s, count))
        labels.append(np.full(count, i, dtype=np.int64))
    time = np.concatenate(times)
    order = np.argsort(time, kind="stable")
    return time[order], np.concatenate(labels)[order]


def _initial_state(
    classes: Sequence[ClassSpec],
    params: FluidParams,
    prices: Prices,
    policy: FleetPolicy,
    config: FleetConfig,
) -> k.FleetState:
    n, b, n_classes = policy.engines, params.slots, len(classes)
    arrival, job_class = _arrivals(classes, n, config)
    n_jobs = len(arrival)
    prompt = np.array([max(1, round(c.prompt_tokens)) for c in classes], dtype=np.int64)
    output = np.array([max(1, round(c.output_tokens)) for c in classes], dtype=np.int64)
    prefill_value = prices.prefill_per_token * prompt.astype(np.float64)
    decode_value = prices.decode_per_token * output.astype(np.float64)
    per_class = np.bincount(job_class, minlength=n_classes)
    class_offset = np.concatenate([[0], np.cumsum(per_class)]).astype(np.int64)
    ints = np.zeros(k.N_INTS, dtype=np.int64)
    ints[[k.N_ENGINES, k.SLOTS, k.CHUNK, k.N_CLASSES]] = n, b, params.chunk_tokens, n_classes
    ints[k.GATE], ints[k.ROUTER] = _GATES[policy.gate], _ROUTERS[policy.router]
    ints[k.PROCESSING] = -1
    ints[k.HOLD_WHILE_BUFFERED] = int(policy.hold_while_buffered)
    floats = np.zeros(k.N_FLOATS)
    floats[[k.TAU_MIXED, k.TAU_SOLO]] = params.tau_mixed_s, params.tau_solo_s
    floats[[k.HORIZON, k.WARMUP, k.SAMPLE_DT]] = (
        config.horizon_s,
        config.warmup_s,
        config.sample_interval_s,
    )
    n_samples = int(config.horizon_s / config.sample_interval_s) + 1
    mode = np.where(np.arange(n) < policy.mixed_engines, k.MIXED, k.SOLO).astype(np.int64)
    # FCFS engines hold B requests in all; a mixed engine of the other policies gives one
    # slot to prefill and B - 1 to decodes; a solo engine all B to decodes
    decode_cap = (
        np.where(mode == k.SOLO, b, b - 1) if policy.router != Router.LOCAL else np.full(n, b)
    )
    head = np.tile(class_offset[:-1], (4, 1))
    return k.FleetState(
        ints=ints,
        floats=floats,
        prompt=prompt,
        output=output,
        value=prefill_value + decode_value,
        prefill_value=prefill_value,
        decode_value=decode_value,
        theta=np.array([c.abandonment for c in classes], dtype=np.float64),
        gate_target=np.asarray(policy.gate_target, dtype=np.float64),
        queue_target=np.asarray(policy.queue_target, dtype=np.float64),
        priority=np.asarray(policy.priority, dtype=np.float64),
        solo_probability=np.asarray(policy.solo_probability, dtype=np.float64),
        admissible=(np.asarray(policy.gate_target) > 0).astype(np.int64)
        if policy.gate == Gate.TARGET
        else np.ones(n_classes, dtype=np.int64),
        arrival=arrival,
        job_class=job_class,
        job_state=np.full(n_jobs, k.FUTURE, dtype=np.int64),
        queued_at=np.zeros(n_jobs),
        decode_start=np.zeros(n_jobs),
        class_offset=class_offset,
        queue_jobs=np.full((4, max(n_jobs, 1)), -1, dtype=np.int64),
        queue_head=head.copy(),
        queue_tail=head.copy(),
        queue_count=np.zeros((4, n_classes), dtype=np.int64),
        next_abandon=np.full((4, n_classes), np.inf),
        in_prefill=np.zeros(n_classes, dtype=np.int64),
        mode=mode,
        decode_cap=decode_cap.astype(np.int64),
        prefill_job=np.full(n, -1, dtype=np.int64),
        prefill_left=np.zeros(n, dtype=np.int64),
        slot_job=np.full((n, b), -1, dtype=np.int64),
        slot_left=np.zeros((n, b), dtype=np.int64),
        slot_fresh=np.zeros((n, b), dtype=np.int64),
        n_decoding=np.zeros(n, dtype=np.int64),
        busy=np.zeros(n, dtype=np.int64),
        iteration_mixed=np.zeros(n, dtype=np.int64),
        heap_time=np.zeros(n),
        heap_engine=np.zeros(n, dtype=np.int64),
        set_items=np.zeros((3, n), dtype=np.int64),
        set_pos=np.full((3, n), -1, dtype=np.int64),
        set_size=np.zeros(3, dtype=np.int64),
        counts=np.zeros((n_classes, k.N_COUNTS), dtype=np.int64),
        money=np.zeros((n_classes, k.N_MONEY)),
        sample_time=np.zeros(n_samples),
        sample_waiting=np.zeros((n_samples, n_classes), dtype=np.int64),
        sample_buffered=np.zeros((n_samples, n_classes), dtype=np.int64),
        sample_prefilling=np.zeros((n_samples, n_classes), dtype=np.int64),
        sample_decoding=np.zeros((n_samples, 2), dtype=np.int64),
    )


def _result(
    s: k.FleetState, classes: Sequence[ClassSpec], policy: FleetPolicy, config: FleetConfig
) -> FleetResult:
    n, measured_s = policy.engines, config.horizon_s - config.warmup_s
    taken = int(s.ints[k.SAMPLE_INDEX])
    trace = FleetTrace(
        time_s=s.sample_time[:taken].copy(),
        waiting=s.sample_waiting[:taken].copy(),
        buffered=s.sample_buffered[:taken].copy(),
        prefilling=s.sample_prefilling[:taken].copy(),
        decoding_mixed=s.sample_decoding[:taken, 0].copy(),
        decoding_solo=s.sample_decoding[:taken, 1].copy(),
    )
    after = trace.time_s >= config.warmup_s
    outcomes = []
    for i, c in enumerate(classes):
        counts, money = s.counts[i], s.money[i]
        mine = s.job_class == i
        in_system = int(np.isin(s.job_state[mine], _IN_SYSTEM).sum())
        done = int(counts[k.COMPLETED_MEASURED])
        arrived = int(counts[k.ARRIVED_MEASURED])
        outcomes.append(
            ClassOutcome(
                name=c.name,
                arrived=int(counts[k.ARRIVED]),
                prefilled=int(counts[k.PREFILLED]),
                completed=int(counts[k.COMPLETED]),
                abandoned_waiting=int(counts[k.ABANDONED_WAITING]),
                abandoned_buffered=int(counts[k.ABANDONED_BUFFER]),
                in_system=in_system,
                completions_per_gpu_s=done / n / measured_s,
                served_fraction=done / arrived if arrived else 0.0,
                mean_tpot_s=float(money[k.TPOT_SUM] / done) if done else 0.0,
                mean_waiting=_mean(trace.waiting[after, i]),
                mean_prefilling=_mean(trace.prefilling[after, i]),
            )
        )
    buffered = trace.buffered.sum(axis=1)
    return FleetResult(
        policy=policy.kind,
        engines=n,
        mixed_engines=policy.mixed_engines,
        measured_s=measured_s,
        revenue_per_gpu_s=float(s.money[:, k.BUNDLED].sum()) / n / measured_s,
        per_phase_revenue_per_gpu_s=float(
            s.money[:, k.PREFILL_VALUE].sum() + s.money[:, k.DECODE_VALUE].sum()
        )
        / n
        / measured_s,
        classes=tuple(outcomes),
        mean_buffered=_mean(buffered[after]),
        peak_buffered=int(buffered.max()) if len(buffered) else 0,
        trace=trace,
    )


_IN_SYSTEM = np.array([k.WAITING, k.PREFILLING, k.BUFFERED, k.DECODING])


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0
