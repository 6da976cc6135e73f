"""Capacity planning: how many engines (GPUs) a dataset needs to finish by a deadline.

Invariant: the prediction sees only what the pipeline knows before it runs: prompts,
max_tokens and the pipeline's own output-length estimates (planners/estimates.py: earlier
results of the dataset as history, else max_tokens), never true lengths. It simulates the
dataset on k = 1, 2, 4, ... engines (simulate/multi_engine.py: the warm-up spread over the
engines, one BlendServe plan, the DP split) with outputs drawn around their estimates
(lognormal: the estimate as mean, its spread as std of log length; a makespan depends on the
longest outputs, so the mean alone predicts too short), averaged over a few draws. Each
makespan carries a band: +- the step model's calibration error (the rms relative error of
the fit named in the hardware spec's `source`), plus the relative standard error of the total
output the estimates imply, plus the makespan's relative spread between the draws. What the
band leaves out: estimates biased as a whole (a prefix group's mean measured on other prompts;
max_tokens where nothing was measured, counted apart as an upper bound), length tails heavier
than lognormal, and engine behaviour the simulator does not model. A dataset of more than
`sample_limit` requests is simulated on a seeded sample of each prefix group (the same
fraction f of every group) on m = max(1, round(k f)) engines standing for k, each with about
the share one of the k would have, the makespan scaled by m / (k f).

Every makespan includes one engine start (the k engines start side by side): measured on
this machine where the store has runs of the model, else estimated from the weight bytes
(blend/cost/engine_start.py), and said which. The report names the hardware it is priced
for and says when that is not this machine's (blend/cost/machine.py).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from blend.cost.engine_start import EngineStart, estimated_engine_start, measured_engine_start
from blend.cost.machine import HardwareCheck, ThisMachine, check_hardware
from blend.cost.model import CostModel, HardwareSpec, load_hardware
from blend.plan.over_length import context_limit
from blend.planners import (
    EstimateSource,
    LengthHint,
    OutputEstimates,
    PlanRequest,
    estimate_outputs,
)
from blend.planners.history import HISTORY_LIMIT, requests_with_history
from blend.simulate.io import Workload
from blend.simulate.multi_engine import MultiEngineSimulator
from blend.simulate.pipeline import SimulatedEngine
from blend.simulate.run import default_settings
from blend.simulate.types import SimRequest
from blend.store import sql
from blend.store.database import Store, connect_read_only, fetch_arrow, fetch_dicts
from blend.store.names import NameKind, validate_name

SAMPLE_LIMIT = 20_000  # requests simulated at most (larger datasets: a sample)
DRAWS = 3  # draws of the output lengths around their estimates simulated per prediction
UNFITTED_STEP_ERROR = 0.15  # the band's step-model error where no fit is recorded
MEASURED_STARTS = 10  # earlier runs whose engine starts are taken, newest first
_RMS = re.compile(r"rms(?: relative)? error (\d+(?:\.\d+)?)%|error rms (\d+(?:\.\d+)?)%")


class CapacityError(ValueError):
    """The capacity cannot be planned as asked (no profile, bad deadline, bad option)."""


@dataclass(frozen=True, slots=True)
class StepModelError:
    """The calibration error the band carries (relative, e.g. 0.034 for 3.4%)."""

    relative: float
    basis: str  # where the number comes from


def step_model_error(hardware: HardwareSpec) -> StepModelError:
    """The rms relative error of the step-model fit named in the spec's `source`; a spec
    whose efficiencies come from another chip's fit ("from the H200 fit") borrows that
    chip's error; none recorded: UNFITTED_STEP_ERROR."""
    own = _rms_in(hardware.source)
    if own is not None:
        return StepModelError(own, f"{hardware.name} step-model fit (rms relative error)")
    borrowed = re.search(r"from the (\w+) fit", hardware.source, flags=re.IGNORECASE)
    if borrowed:
        name = borrowed.group(1).lower()
        try:
            other = _rms_in(load_hardware(name).source)
        except ValueError:
            other = None
        if other is not None:
            return StepModelError(
                other,
                f"{name} step-model fit (rms relative error), which {hardware.name}'s "
                "efficiencies come from; not fitted on this hardware itself",
            )
    return StepModelError(UNFITTED_STEP_ERROR, f"{hardware.name}: no fit recorded (assumed)")


def _rms_in(source: str) -> float | None:
    match = _RMS.search(source)
    if match is None:
        return None
    return float(match.group(1) or match.group(2)) / 100.0


def length_error(estimates: OutputEstimates) -> float:
    """Relative standard error of the total output tokens: each request's length lognormal
    around its estimate with its spread (std of log length), independent of the others."""
    tokens = np.asarray(estimates.tokens, dtype=np.float64)
    if tokens.sum() <= 0:
        return 0.0
    spread = np.asarray(estimates.spread, dtype=np.float64)
    std = tokens * np.sqrt(np.expm1(spread**2))
    return float(np.sqrt(np.sum(std**2)) / tokens.sum())


def prediction_workload(
    requests: Sequence[PlanRequest], estimates: OutputEstimates, seed: int | None = 0
) -> Workload:
    """The requests with outputs drawn around their estimates: lognormal with the estimate
    as its mean and the estimate's spread as the std of log length (what the measurements
    behind it vary by; spread 0: the estimate itself), rounded into 1 .. max_tokens.
    seed None: every output at its estimate. Drawn rather than set to the mean, since a
    makespan depends on the longest outputs, not only on the total."""
    tokens = np.asarray(estimates.tokens, dtype=np.float64)
    if seed is not None:
        spread = np.asarray(estimates.spread, dtype=np.float64)
        z = np.random.default_rng(seed).standard_normal(len(tokens))
        tokens = tokens * np.exp(spread * z - spread**2 / 2)
    sims: list[SimRequest] = []
    limits: list[int | None] = []
    for request, estimate in zip(requests, tokens.tolist(), strict=True):
        length = max(1, min(round(estimate), request.max_tokens))
        sims.append(SimRequest(request.request_id, request.prompt_token_ids, length))
        limits.append(request.max_tokens)
    return Workload(sims, limits)


def sample_by_group(
    estimates: OutputEstimates, limit: int, seed: int = 0
) -> tuple[np.ndarray, float]:
    """Indices of about `limit` requests, the same fraction of every prefix group (rounded
    at random, so small groups come whole or not at all), and that fraction (1: all)."""
    n = len(estimates)
    if n <= limit:
        return np.arange(n, dtype=np.int64), 1.0
    fraction = limit / n
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(estimates.group_key):
        groups.setdefault(key, []).append(i)
    picked: list[np.ndarray] = []
    for key in sorted(groups):
        members = np.asarray(groups[key], dtype=np.int64)
        want = len(members) * fraction
        take = int(want) + int(rng.random() < want - int(want))
        if take:
            picked.append(np.sort(rng.choice(members, size=take, replace=False)))
    chosen = np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)
    return chosen, len(chosen) / n


@dataclass(frozen=True, slots=True)
class EngineCountPrediction:
    """The predicted makespan on k engines, with its band (s): one engine start plus the
    simulated steps."""

    k: int
    makespan_s: float  # engine start + simulated_s
    draw_spread: float  # relative std of the simulated makespan between draws (0: one draw)
    low_s: float  # the start's low + the simulated makespan's band
    high_s: float
    finish: datetime  # start + makespan
    meets_deadline: bool  # the prediction finishes by the deadline
    meets_with_band: bool  # the band's upper edge does too
    simulated_s: float = 0.0  # the engines' steps: mean over the draws of the output lengths


@dataclass(frozen=True, slots=True)
class CapacityReport:
    """How long the dataset takes on 1, 2, 4, ... engines, and the least that meet the
    deadline."""

    n_requests: int
    n_simulated: int  # requests in the simulated sample
    sample_fraction: float  # n_simulated / n_requests
    start: datetime
    deadline: datetime
    model: str
    hardware: str
    step_error: StepModelError
    length_error: float  # relative (see length_error)
    n_at_max_tokens: int  # requests estimated at max_tokens (nothing measured: upper bound)
    predictions: list[EngineCountPrediction]
    simulate_seconds: float  # wall time of the simulations (s)
    estimate_sources: dict[str, int] = field(default_factory=dict)
    dataset: str | None = None
    snapshot: int | None = None
    engine_start: EngineStart | None = None  # in every makespan (None: not counted)
    hardware_check: HardwareCheck | None = None  # the spec against this machine
    gpus_per_engine: int = 1  # tensor parallelism: GPUs one engine spans
    # prompts over the context (max_model_len tokens): no work, left out of the simulation
    # (the run writes their error rows); not in n_requests
    n_over_length: int = 0
    max_model_len: int | None = None
    kv_capacity_tokens: int | None = None  # one engine's KV cache as priced (tokens)

    @property
    def available_s(self) -> float:
        return (self.deadline - self.start).total_seconds()

    @property
    def band(self) -> float:
        """The band's widest half-width, relative: step-model error plus length error plus
        the largest spread between draws."""
        spread = max(p.draw_spread for p in self.predictions)
        return self.step_error.relative + self.length_error + spread

    @property
    def least_engines(self) -> int | None:
        """The fewest engines whose predicted makespan meets the deadline (None: none do)."""
        return next((p.k for p in self.predictions if p.meets_deadline), None)

    @property
    def least_engines_with_band(self) -> int | None:
        """The fewest engines whose band's upper edge meets the deadline."""
        return next((p.k for p in self.predictions if p.meets_with_band), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "snapshot": self.snapshot,
            "n_requests": self.n_requests,
            "n_simulated": self.n_simulated,
            "sample_fraction": self.sample_fraction,
            "start": self.start.isoformat(),
            "deadline": self.deadline.isoformat(),
            "available_s": self.available_s,
            "model": self.model,
            "hardware": self.hardware,
            "gpus_per_engine": self.gpus_per_engine,
            "n_over_length": self.n_over_length,
            "max_model_len": self.max_model_len,
            "kv_capacity_tokens": self.kv_capacity_tokens,
            **self._start_and_machine_json(),
            "band_relative": self.band,
            "step_model_error": self.step_error.relative,
            "step_model_error_basis": self.step_error.basis,
            "length_error": self.length_error,
            "n_at_max_tokens": self.n_at_max_tokens,
            "estimate_sources": self.estimate_sources,
            "least_engines": self.least_engines,
            "least_engines_with_band": self.least_engines_with_band,
            "predictions": [
                {
                    "k": p.k,
                    "makespan_s": p.makespan_s,
                    "simulated_s": p.simulated_s,
                    "draw_spread": p.draw_spread,
                    "low_s": p.low_s,
                    "high_s": p.high_s,
                    "finish": p.finish.isoformat(),
                    "meets_deadline": p.meets_deadline,
                    "meets_with_band": p.meets_with_band,
                }
                for p in self.predictions
            ],
            "simulate_seconds": self.simulate_seconds,
        }

    def _start_and_machine_json(self) -> dict[str, Any]:
        start, check = self.engine_start, self.hardware_check
        return {
            "machine": None if check is None else check.machine.description,
            "hardware_matches_machine": None if check is None else check.matches,
            "engine_start_s": None if start is None else start.seconds,
            "engine_start_low_s": None if start is None else start.low_s,
            "engine_start_high_s": None if start is None else start.high_s,
            "engine_start_measured": None if start is None else start.measured,
            "engine_start_basis": None if start is None else start.basis,
        }

    def summary(self) -> list[str]:
        """Human-readable lines: one per engine count, then the verdict and what the band is."""
        sampled = (
            f", simulated on a {self.sample_fraction:.1%} sample of each prefix group"
            if self.sample_fraction < 1
            else ""
        )
        lines = [
            f"{self.n_requests} requests{sampled}; {self.model} on {self.hardware}; "
            f"{self.start:%Y-%m-%d %H:%M} -> deadline {self.deadline:%Y-%m-%d %H:%M} "
            f"({_hours(self.available_s)})"
        ]
        if self.n_over_length:
            lines.append(
                f"{self.n_over_length} more prompts leave no room for output within "
                f"max_model_len {self.max_model_len}: error rows, no work (not simulated)"
            )
        mismatch = None if self.hardware_check is None else self.hardware_check.note()
        if mismatch is not None:
            lines.append(f"hardware: {mismatch}")
        start = self.engine_start
        if start is not None:
            lines.append(
                f"engine start: {start.describe()}; in every makespan below (the engines "
                "start side by side)"
            )
        for p in self.predictions:
            verdict = "meets" if p.meets_with_band else "meets (not with the band)"
            verdict = verdict if p.meets_deadline else "misses"
            parts = (
                ""
                if start is None
                else f" = start {_hours(start.seconds)} + run {_hours(p.simulated_s)}"
            )
            lines.append(
                f"  k={p.k}: {_hours(p.makespan_s)}{parts} ({_hours(p.low_s)} .. "
                f"{_hours(p.high_s)}), done {p.finish:%H:%M}: {verdict}"
            )
        least, safe = self.least_engines, self.least_engines_with_band
        if least is None:
            lines.append(f"no engine count up to {self.predictions[-1].k} meets the deadline")
        else:
            gpus = self.gpus_per_engine
            lines.append(
                f"needs {least} engine(s)"
                + (f" of {gpus} GPUs each ({least * gpus} GPUs)" if gpus > 1 else "")
                + (
                    f"; {safe} to meet it at the band's upper edge"
                    if safe is not None and safe != least
                    else ""
                )
                + ("; none meets it at the band's upper edge" if safe is None else "")
            )
        spread = max(p.draw_spread for p in self.predictions)
        lines.append(
            f"band up to +-{self.band:.1%} on the engines' steps: step model "
            f"{self.step_error.relative:.1%} ({self.step_error.basis}) + total output-length "
            f"spread {self.length_error:.1%} + makespan spread between length draws (up to "
            f"{spread:.1%})" + ("" if start is None else "; the start adds its own range")
        )
        if self.n_at_max_tokens:
            lines.append(
                f"{self.n_at_max_tokens} requests have no measured length and count at "
                "max_tokens: for them the prediction is an upper bound"
            )
        return lines


def _hours(seconds: float) -> str:
    """A duration for people: 1h05m, 12.5 min, or 8.2 s (short jobs)."""
    minutes = round(seconds / 60)
    if minutes >= 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def sample_engines(k: int, fraction: float) -> int:
    """Engines to simulate a `fraction` sample on, standing for k engines on everything: as
    many as give each about the share one of the k would have (at least one), so warm-up
    and drain take the share of an engine's time they really take; the makespan is then
    scaled by m / (k x fraction), the real share over the simulated one."""
    return max(1, round(k * fraction))


def engine_counts(max_engines: int) -> list[int]:
    """1, 2, 4, ... up to max_engines (which is included even when not a power of two)."""
    if max_engines < 1:
        raise CapacityError(f"--max-engines must be >= 1, got {max_engines}")
    counts = [1 << i for i in range(int(math.log2(max_engines)) + 1)]
    return counts if counts[-1] == max_engines else [*counts, max_engines]


def at_clock(day: datetime, clock: str, what: str = "time") -> datetime:
    """`day` at the time of day `clock` ("HH:MM")."""
    try:
        hours, minutes = (int(part) for part in clock.split(":"))
        if not (0 <= hours < 24 and 0 <= minutes < 60):
            raise ValueError
    except ValueError:
        raise CapacityError(f"{what} {clock!r}: expected a time of day HH:MM") from None
    return day.replace(hour=hours, minute=minutes, second=0, microsecond=0)


def deadline_after(start: datetime, clock: str) -> datetime:
    """The first time of day `clock` ("HH:MM") after `start` (same day or the next)."""
    at = at_clock(start, clock, "deadline")
    return at if at > start else at + timedelta(days=1)


def predict_capacity(
    requests: Sequence[PlanRequest],
    estimates: OutputEstimates,
    cost: CostModel,
    *,
    start: datetime,
    deadline: datetime,
    max_engines: int = 8,
    sample_limit: int = SAMPLE_LIMIT,
    seed: int = 0,
    history: Sequence[LengthHint] = (),
    draws: int = DRAWS,
    engine_start: EngineStart | None = None,
) -> CapacityReport:
    """Predicted makespans on 1, 2, 4, ... max_engines engines (module invariant): the mean
    over `draws` draws of the output lengths; `history`: the hints `estimates` came from
    (the simulated pipeline plans with them too); `engine_start`: added to every makespan
    (None: only the simulated steps)."""
    if not requests:
        raise CapacityError("nothing to plan: the dataset has no requests")
    if deadline <= start:
        raise CapacityError(f"deadline {deadline} is not after the start {start}")
    counts = engine_counts(max_engines)
    started = time.perf_counter()
    if draws < 1:
        raise CapacityError(f"draws must be >= 1, got {draws}")
    chosen, fraction = sample_by_group(estimates, sample_limit, seed)
    picked, picked_estimates = [requests[i] for i in chosen.tolist()], estimates.subset(chosen)
    if not np.any(picked_estimates.spread > 0):
        draws = 1  # nothing to draw: every output at its estimate
    makespans = np.zeros((draws, len(counts)))
    for d in range(draws):
        workload = prediction_workload(picked, picked_estimates, seed + d)
        chunked = cost.hardware.device != "cpu"
        engine = SimulatedEngine(default_settings(workload, cost, chunked))
        simulator = MultiEngineSimulator(workload, cost, engine, seed=seed, history=history)
        runs: dict[int, float] = {}  # makespan per engine count simulated
        for j, k in enumerate(counts):
            m = sample_engines(k, fraction)
            if m not in runs:
                runs[m] = simulator.run(m).makespan_s
            makespans[d, j] = runs[m] * m / (k * fraction)
    step, lengths = step_model_error(cost.hardware), length_error(estimates)
    available = (deadline - start).total_seconds()
    predictions = []
    begin = (
        (0.0, 0.0, 0.0)
        if engine_start is None
        else (
            engine_start.seconds,
            engine_start.low_s,
            engine_start.high_s,
        )
    )
    for j, k in enumerate(counts):
        simulated = float(makespans[:, j].mean())
        spread = float(makespans[:, j].std(ddof=1) / simulated) if draws > 1 else 0.0
        band = step.relative + lengths + spread
        makespan = begin[0] + simulated
        high = begin[2] + simulated * (1 + band)
        predictions.append(
            EngineCountPrediction(
                k=k,
                makespan_s=makespan,
                draw_spread=spread,
                low_s=begin[1] + simulated * max(0.0, 1 - band),
                high_s=high,
                finish=start + timedelta(seconds=makespan),
                meets_deadline=makespan <= available,
                meets_with_band=high <= available,
                simulated_s=simulated,
            )
        )
    at_max = sum(s is EstimateSource.MAX_TOKENS for s in estimates.source)
    return CapacityReport(
        n_requests=len(requests),
        n_simulated=len(chosen),
        sample_fraction=fraction,
        start=start,
        deadline=deadline,
        model=cost.model.name,
        hardware=cost.hardware.name,
        gpus_per_engine=cost.tensor_parallel_size,
        kv_capacity_tokens=cost.kv_capacity_tokens,
        step_error=step,
        length_error=lengths,
        n_at_max_tokens=at_max,
        predictions=predictions,
        simulate_seconds=time.perf_counter() - started,
        estimate_sources=estimates.source_counts(),
        engine_start=engine_start,
    )


def dataset_capacity(
    store: Store,
    dataset: str,
    cost: CostModel,
    *,
    start: datetime,
    deadline: datetime,
    model_sha256: str | None = None,
    only_new: bool = False,
    max_engines: int = 8,
    sample_limit: int = SAMPLE_LIMIT,
    seed: int = 0,
    draws: int = DRAWS,
    machine: ThisMachine | None = None,
    max_model_len: int | None = None,
) -> CapacityReport:
    """predict_capacity for the latest profile of `dataset`, read from the store read-only:
    its prompts' token ids and max_tokens, and (given the model's sha256) the dataset's
    earlier results by that model as the estimates' history, as the plan stage reads them.
    With `only_new`, prompts that model already answered are left out (an incremental run).
    The engine start is the one measured by the model's earlier runs in the store where the
    hardware priced is `machine`'s (this machine, found when not given), else estimated.
    Prompts over the context (the user's `max_model_len` when smaller than the model's) are
    no work: left out and counted (plan/over_length.py)."""
    validate_name(dataset, NameKind.DATASET, "dataset_capacity(dataset=...)")
    with connect_read_only(store) as con:
        profile = fetch_dicts(
            con, sql.load("plan/latest_profile"), {"dataset": dataset, "snapshot": None}
        )
        if not profile:
            raise CapacityError(
                f"dataset {dataset!r} has no profile: run `blend profile --dataset NAME` first"
            )
        snap = profile[0]
        limit = context_limit(snap["max_model_len"], max_model_len)
        rows = fetch_arrow(
            con,
            sql.load("plan/plan_requests"),
            {
                "dataset": dataset,
                "snapshot": snap["snapshot"],
                "tokenizer_sha256": snap["tokenizer_sha256"],
                "done_model_sha256": model_sha256 if only_new else None,
                "max_model_len": limit,
            },
        ).to_pylist()
        history = (
            fetch_arrow(
                con,
                sql.load("plan/history_lengths"),
                {
                    "dataset": dataset,
                    "model_sha256": model_sha256,
                    "tokenizer_sha256": snap["tokenizer_sha256"],
                    "limit": HISTORY_LIMIT,
                },
            ).to_pylist()
            if model_sha256 is not None
            else []
        )
        starts = (
            fetch_dicts(
                con,
                sql.load("plan/engine_starts"),
                {"model_sha256": model_sha256, "limit": MEASURED_STARTS},
            )
            if model_sha256 is not None
            else []
        )
    check = check_hardware(cost.hardware.name, machine)
    engine_start = _engine_start(cost, check, [float(s["start_s"]) for s in starts])
    runnable = [row for row in rows if len(row["token_ids"]) < limit]
    if rows and not runnable:
        raise CapacityError(
            f"every one of the {len(rows)} prompts leaves no room for output within "
            f"max_model_len {limit}: nothing to run"
        )
    requests, hints = requests_with_history(runnable, history)
    estimates = estimate_outputs(requests, hints)
    report = predict_capacity(
        requests,
        estimates,
        cost,
        start=start,
        deadline=deadline,
        max_engines=max_engines,
        sample_limit=sample_limit,
        seed=seed,
        history=hints,
        draws=draws,
        engine_start=engine_start,
    )
    return replace(
        report,
        dataset=dataset,
        snapshot=int(snap["snapshot"]),
        hardware_check=check,
        n_over_length=len(rows) - len(runnable),
        max_model_len=limit,
    )


def _engine_start(cost: CostModel, check: HardwareCheck, measured: list[float]) -> EngineStart:
    """The starts measured by earlier runs of the model, which ran on this machine, where the
    prediction is priced for this machine; else the estimate for the hardware priced."""
    if check.matches:
        here = measured_engine_start(measured, "of this model in this store")
        if here is not None:
            return here
    return estimated_engine_start(cost)


def pipeline_capacity(
    store: Store,
    dataset: str,
    deadline: str,
    cost: CostModel,
    *,
    model_sha256: str,
    incremental: bool,
    max_engines: int = 8,
    max_model_len: int | None = None,
) -> CapacityReport:
    """The pipeline's capacity stage: the prompts it is about to run (all, or with
    `incremental` those the model has not answered; none over `max_model_len`, the user's
    context, or the model's), from now until the next `deadline` (HH:MM)."""
    start = datetime.now().astimezone()
    return dataset_capacity(
        store,
        dataset,
        cost,
        start=start,
        deadline=deadline_after(start, deadline),
        model_sha256=model_sha256,
        only_new=incremental,
        max_engines=max_engines,
        max_model_len=max_model_len,
    )
