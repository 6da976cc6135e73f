"""The offline LP sequence: a phase plan for a whole job whose classes are all backlogged.

Offline, every request is there at time 0, so there are no arrival rates: solve the fluid LP
with every class saturated, run its rates until the first class drains (its last request
done), re-solve for the classes left, and so on: a short sequence of LPs, one per phase,
each at most as many phases as classes. Phase k lasts
    t_k = min over classes i with rate r_i > 0 of  N_i(k) / r_i,   r_i = n_engines x
          (mu_m,i y*_m,i + mu_s,i y*_s,i)   (completions per second, per class)
and N_i(k + 1) = N_i(k) - r_i t_k. The predicted makespan is the sum of the t_k. It is a
prediction of the fluid model (no KV memory limit, no start-up or drain, a class's requests
all of its mean size); the gate policy (blend/admission/lp_gate.py) runs the same sequence
in the simulator, where those effects are real.

`fluid_min_makespan_s` is the fluid model's own optimum for the job (one LP over time
integrals: minimise T with every class's prefills and decodes done), a reference for how
much the greedy sequence (maximise the rate now, phase by phase) gives away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from blend.control.classes import RequestClass
from blend.control.fluid_lp import (
    ClassSpec,
    FluidParams,
    LpSolution,
    LpVariant,
    Prices,
    solve_fluid_lp,
)

DRAINED = 1e-9  # a class with fewer requests left than this share of its count is done


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase: the saturated LP of the classes left, run until the first drains."""

    duration_s: float
    active: tuple[int, ...]  # class ids in this phase's LP
    completion_rate: np.ndarray  # requests/s per class id (all engines; 0 outside `active`)
    remaining_before: np.ndarray  # requests left per class id at the phase's start
    drained: tuple[int, ...]  # class ids that finish in this phase
    solution: LpSolution  # the LP of `active` (per GPU)


@dataclass(frozen=True, slots=True)
class PhasePlan:
    classes: tuple[RequestClass, ...]
    params: FluidParams
    n_engines: int
    phases: tuple[Phase, ...]

    @property
    def makespan_s(self) -> float:
        """The predicted makespan (s): the phases' durations summed."""
        return float(sum(p.duration_s for p in self.phases))

    def to_json(self) -> dict:
        return {
            "makespan_s": self.makespan_s,
            "n_engines": self.n_engines,
            "phases": [
                {
                    "duration_s": p.duration_s,
                    "active": [self.classes[i].name for i in p.active],
                    "drained": [self.classes[i].name for i in p.drained],
                    "completion_rate": {
                        self.classes[i].name: float(p.completion_rate[i]) for i in p.active
                    },
                    "x": {
                        self.classes[i].name: float(p.solution.x[k]) for k, i in enumerate(p.active)
                    },
                    "revenue_per_gpu_s": p.solution.revenue_per_gpu_s,
                }
                for p in self.phases
            ],
        }


def class_specs(classes: Sequence[RequestClass]) -> list[ClassSpec]:
    """The LP's view of request classes (P, D > 0: a class of empty prompts or outputs
    counts one token, which the fluid rates need)."""
    return [
        ClassSpec(c.name, max(c.prompt_tokens, 1.0), max(c.output_tokens, 1.0)) for c in classes
    ]


def phase_plan(
    classes: Sequence[RequestClass],
    params: FluidParams,
    *,
    prices: Prices | None = None,
    variant: LpVariant = LpVariant.BUNDLED,
    n_engines: int = 1,
) -> PhasePlan:
    """The LP sequence of the job `classes` (counts = requests) on `n_engines` GPUs."""
    if n_engines < 1:
        raise ValueError(f"phase_plan: n_engines must be >= 1, got {n_engines}")
    classes = tuple(classes)
    if [c.class_id for c in classes] != list(range(len(classes))):
        raise ValueError("phase_plan: class ids must be 0 .. k-1 in order")
    specs = class_specs(classes)
    counts = np.array([float(c.n_requests) for c in classes])
    remaining = counts.copy()
    phases: list[Phase] = []
    while (remaining > DRAINED * np.maximum(counts, 1.0)).any():
        active = tuple(int(i) for i in np.flatnonzero(remaining > DRAINED * counts))
        solution = solve_fluid_lp(
            [specs[i] for i in active], params, prices, variant, saturated=True
        )
        rate = np.zeros(len(classes))
        rate[list(active)] = n_engines * solution.completion_rate
        serving = [i for i in active if rate[i] > 0]
        if not serving:
            names = [classes[i].name for i in active]
            raise RuntimeError(f"phase_plan: the LP serves none of the classes left {names}")
        duration = min(remaining[i] / rate[i] for i in serving)
        before = remaining.copy()
        remaining = np.maximum(remaining - rate * duration, 0.0)
        drained = tuple(i for i in serving if remaining[i] <= DRAINED * counts[i])
        remaining[list(drained)] = 0.0
        phases.append(Phase(duration, active, rate, before, drained, solution))
    return PhasePlan(classes, params, n_engines, tuple(phases))


def fluid_min_makespan_s(
    classes: Sequence[RequestClass], params: FluidParams, n_engines: int = 1
) -> float:
    """The fluid model's least makespan (s) for the job (fluid_min_plan)."""
    return fluid_min_plan(classes, params, n_engines)[0]


def fluid_min_plan(
    classes: Sequence[RequestClass], params: FluidParams, n_engines: int = 1
) -> tuple[float, np.ndarray]:
    """(T, X): the fluid model's least makespan (s) for the job and the GPU-time each class
    spends prefilling (s): minimise T over X_i and the decode slot-time on mixed and solo
    GPUs (Ym_i, Ys_i), such that mu_p X_i = N_i, mu_m Ym_i + mu_s Ys_i = N_i,
    sum X <= n T, sum Ym <= (B - 1) sum X, sum Ys <= B (n T - sum X). (X_i = N_i / mu_p,i
    is fixed by the first equation: prefill time is proportional to prefill tokens.)"""
    specs = class_specs(classes)
    k = len(specs)
    if k == 0:
        return 0.0, np.zeros(0)
    b = params.slots
    mu_p = np.array([params.prefill_rate(c.prompt_tokens) for c in specs])
    mu_m = np.array([params.mixed_decode_rate(c.output_tokens) for c in specs])
    mu_s = np.array([params.solo_decode_rate(c.output_tokens) for c in specs])
    n_req = np.array([float(c.n_requests) for c in classes])
    # variables [X (k), Ym (k), Ys (k), T]
    n_vars = 3 * k + 1
    x, ym, ys, t = np.arange(k), np.arange(k, 2 * k), np.arange(2 * k, 3 * k), 3 * k
    a_eq, b_eq = [], []
    for i in range(k):
        row = np.zeros(n_vars)
        row[x[i]] = mu_p[i]
        a_eq.append(row)
        b_eq.append(n_req[i])
        row = np.zeros(n_vars)
        row[ym[i]], row[ys[i]] = mu_m[i], mu_s[i]
        a_eq.append(row)
        b_eq.append(n_req[i])
    a_ub = []
    row = np.zeros(n_vars)
    row[x], row[t] = 1.0, -n_engines
    a_ub.append(row)
    row = np.zeros(n_vars)
    row[ym], row[x] = 1.0, -(b - 1.0)
    a_ub.append(row)
    row = np.zeros(n_vars)
    row[ys], row[x], row[t] = 1.0, float(b), -float(b) * n_engines
    a_ub.append(row)
    objective = np.zeros(n_vars)
    objective[t] = 1.0
    result = linprog(
        objective,
        A_ub=np.array(a_ub),
        b_ub=np.zeros(3),
        A_eq=np.array(a_eq),
        b_eq=np.array(b_eq),
        bounds=[(0.0, None)] * n_vars,
        method="highs",
    )
    if result.status != 0:
        raise RuntimeError(f"fluid_min_plan: HiGHS failed: {result.message}")
    return float(result.x[t]), np.asarray(result.x[x], dtype=np.float64)
