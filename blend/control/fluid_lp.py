"""The fluid LP of prefill-decode contention (docs/control.md), solved with HiGHS.

Model, per GPU, for request classes i with prompt P_i and output D_i tokens: a GPU runs B
slots; a *mixed* iteration (one prefill chunk of C tokens plus up to B - 1 decodes) takes
tau = alpha + beta C seconds, a *solo* iteration (decodes only) tau_solo = 1 / gamma. Rates
(1/s): prefill mu_p = C / (P tau), decode on a mixed GPU mu_m = 1 / (D tau), on a solo GPU
mu_s = gamma / D. Decision variables, per class: x_i the share of GPUs prefilling class i,
y_m,i / y_s,i the decode slots it holds on mixed / solo GPUs, q_p,i / q_d,i its prefill and
decode queues (requests per GPU). With arrivals lambda_i and abandonment theta_i:

    max  revenue (see LpVariant)
    s.t. sum x <= 1;  sum y_m <= (B - 1) sum x;  sum y_s <= B (1 - sum x)
         lambda_i - theta_i q_p,i = mu_p,i x_i                 (prefill flow)
         mu_p,i x_i - theta_i q_d,i = mu_m,i y_m,i + mu_s,i y_s,i   (decode flow)
         all >= 0

Saturated (an offline job: every class backlogged) drops the arrival equations and the queues;
what is prefilled is decoded (mu_p x = mu_m y_m + mu_s y_s), and the LP picks the mix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from scipy.optimize import linprog


class LpVariant(StrEnum):
    BUNDLED = "bundled"  # a request earns c_p P + c_d D when its decode finishes
    PER_PHASE = "per-phase"  # prefill earns c_p P when it finishes, decode c_d D when it does
    SLI_AWARE = "sli-aware"  # bundled, with fairness and time-per-output-token constraints


class LpInfeasibleError(ValueError):
    """The LP has no solution (e.g. SLI constraints no GPU mix can meet)."""


@dataclass(frozen=True, slots=True)
class ClassSpec:
    """One request class of the fluid model."""

    name: str
    prompt_tokens: float  # P_i (tokens)
    output_tokens: float  # D_i (tokens)
    arrival_rate: float = 0.0  # lambda_i (requests/s per GPU); unused when saturated
    abandonment: float = 0.0  # theta_i (1/s) of a waiting request

    def __post_init__(self) -> None:
        if not (self.prompt_tokens > 0 and self.output_tokens > 0):
            raise ValueError(
                f"class {self.name!r}: prompt and output tokens must be > 0, got "
                f"P={self.prompt_tokens}, D={self.output_tokens}"
            )
        if self.arrival_rate < 0 or self.abandonment < 0:
            raise ValueError(
                f"class {self.name!r}: arrival rate and abandonment must be >= 0, got "
                f"lambda={self.arrival_rate}, theta={self.abandonment}"
            )


@dataclass(frozen=True, slots=True)
class FluidParams:
    """One GPU's iteration model."""

    alpha_s: float  # fixed part of a mixed iteration (s)
    beta_s_per_token: float  # mixed iteration time per prefill-chunk token (s/token)
    gamma_tok_s: float  # decode tokens per second per slot on a solo GPU (1 / tau_solo)
    slots: int  # B: requests a GPU runs at once
    chunk_tokens: int  # C: prefill tokens per mixed iteration

    def __post_init__(self) -> None:
        if self.slots < 2:
            raise ValueError(f"FluidParams.slots must be >= 2 (one prefill slot), got {self.slots}")
        if self.chunk_tokens < 1:
            raise ValueError(f"FluidParams.chunk_tokens must be >= 1, got {self.chunk_tokens}")
        if not (self.alpha_s >= 0 and self.beta_s_per_token >= 0 and self.gamma_tok_s > 0):
            raise ValueError(
                f"FluidParams: need alpha >= 0, beta >= 0, gamma > 0; got alpha={self.alpha_s}, "
                f"beta={self.beta_s_per_token}, gamma={self.gamma_tok_s}"
            )
        if self.tau_mixed_s <= 0:
            raise ValueError("FluidParams: a mixed iteration must take > 0 s")

    @property
    def tau_mixed_s(self) -> float:
        """tau = alpha + beta C: one mixed iteration (s)."""
        return self.alpha_s + self.beta_s_per_token * self.chunk_tokens

    @property
    def tau_solo_s(self) -> float:
        """1 / gamma: one decode-only iteration (s)."""
        return 1.0 / self.gamma_tok_s

    def prefill_rate(self, prompt_tokens: float) -> float:
        """mu_p: prefills of P tokens finished per second by one prefill slot (1/s)."""
        return self.chunk_tokens / (prompt_tokens * self.tau_mixed_s)

    def mixed_decode_rate(self, output_tokens: float) -> float:
        """mu_m: decodes of D tokens finished per second by one slot of a mixed GPU (1/s)."""
        return 1.0 / (output_tokens * self.tau_mixed_s)

    def solo_decode_rate(self, output_tokens: float) -> float:
        """mu_s: decodes of D tokens finished per second by one slot of a solo GPU (1/s)."""
        return self.gamma_tok_s / output_tokens


@dataclass(frozen=True, slots=True)
class Prices:
    """What a token is worth (the paper's c_p and c_d; 1 and 1: the objective is tokens/s)."""

    prefill_per_token: float = 1.0
    decode_per_token: float = 1.0


@dataclass(frozen=True, slots=True)
class SliConstraints:
    """Service-level constraints of the SLI-aware variant (None: not constrained)."""

    min_served_fraction: float | None = None  # every class: completions / arrivals >= this
    max_tpot_s: float | None = None  # every class: mean time per output token (s) <= this


@dataclass(frozen=True, slots=True)
class LpSolution:
    """x*, y*, q* per class (per GPU) and what they imply."""

    variant: LpVariant
    saturated: bool
    classes: tuple[ClassSpec, ...]
    params: FluidParams
    prices: Prices
    x: np.ndarray  # share of GPUs prefilling each class
    y_mixed: np.ndarray  # decode slots on mixed GPUs
    y_solo: np.ndarray  # decode slots on solo GPUs
    q_prefill: np.ndarray  # requests waiting for prefill (0 when saturated)
    q_decode: np.ndarray  # requests waiting for a decode slot (0 when saturated)
    revenue_per_gpu_s: float  # R*: the objective at the optimum (value per GPU per second)

    @property
    def mixed_fraction(self) -> float:
        """sum x: the share of GPUs that run mixed iterations."""
        return float(self.x.sum())

    @property
    def prefill_rate(self) -> np.ndarray:
        """mu_p x: prefills finished per second per GPU, per class."""
        return self._rates("prefill") * self.x

    @property
    def completion_rate(self) -> np.ndarray:
        """mu_m y_m + mu_s y_s: requests finished per second per GPU, per class."""
        return self._rates("mixed") * self.y_mixed + self._rates("solo") * self.y_solo

    @property
    def throughput_tok_s(self) -> float:
        """(P + D) of the finished requests per second per GPU."""
        tokens = np.array([c.prompt_tokens + c.output_tokens for c in self.classes])
        return float(tokens @ self.completion_rate)

    @property
    def solo_route_probability(self) -> np.ndarray:
        """Per class: the share of its decodes served on solo GPUs (0 where none finish)."""
        completion = self.completion_rate
        solo = self._rates("solo") * self.y_solo
        return np.divide(solo, completion, out=np.zeros_like(solo), where=completion > 0)

    def table(self) -> list[dict[str, Any]]:
        """One row per class, for printing."""
        return [
            {
                "class": c.name,
                "prompt_tokens": c.prompt_tokens,
                "output_tokens": c.output_tokens,
                "x": float(self.x[i]),
                "y_mixed": float(self.y_mixed[i]),
                "y_solo": float(self.y_solo[i]),
                "q_prefill": float(self.q_prefill[i]),
                "q_decode": float(self.q_decode[i]),
                "completions_per_s": float(self.completion_rate[i]),
            }
            for i, c in enumerate(self.classes)
        ]

    def _rates(self, kind: str) -> np.ndarray:
        rate = {
            "prefill": lambda c: self.params.prefill_rate(c.prompt_tokens),
            "mixed": lambda c: self.params.mixed_decode_rate(c.output_tokens),
            "solo": lambda c: self.params.solo_decode_rate(c.output_tokens),
        }[kind]
        return np.array([rate(c) for c in self.classes])


def solve_fluid_lp(
    classes: Sequence[ClassSpec],
    params: FluidParams,
    prices: Prices | None = None,
    variant: LpVariant = LpVariant.BUNDLED,
    sli: SliConstraints | None = None,
    *,
    saturated: bool = False,
) -> LpSolution:
    """Solve the fluid LP (HiGHS through scipy) for one GPU's share of the load."""
    if not classes:
        raise ValueError("solve_fluid_lp: no request classes")
    prices = prices or Prices()
    if sli is not None and variant is not LpVariant.SLI_AWARE:
        raise ValueError(f"SLI constraints apply to the sli-aware variant, not {variant}")
    if saturated and sli is not None and sli.min_served_fraction is not None:
        raise ValueError("min_served_fraction needs arrival rates; saturated classes have none")
    lp = _LpBuilder(tuple(classes), params)
    mu_p, mu_m, mu_s = lp.mu_p, lp.mu_m, lp.mu_s
    p = np.array([c.prompt_tokens for c in classes])
    d = np.array([c.output_tokens for c in classes])
    value = prices.prefill_per_token * p + prices.decode_per_token * d
    objective = np.zeros(lp.n_vars)
    if variant is LpVariant.PER_PHASE:
        objective[lp.x] = prices.prefill_per_token * p * mu_p
        objective[lp.ym] = prices.decode_per_token * d * mu_m
        objective[lp.ys] = prices.decode_per_token * d * mu_s
    else:
        objective[lp.ym] = value * mu_m
        objective[lp.ys] = value * mu_s
    lp.capacity_rows()
    lp.flow_rows(saturated)
    if variant is LpVariant.SLI_AWARE and sli is not None:
        lp.sli_rows(sli, saturated)
    result = linprog(
        -objective,
        A_ub=np.array(lp.a_ub) if lp.a_ub else None,
        b_ub=np.array(lp.b_ub) if lp.b_ub else None,
        A_eq=np.array(lp.a_eq) if lp.a_eq else None,
        b_eq=np.array(lp.b_eq) if lp.b_eq else None,
        bounds=lp.bounds(saturated),
        method="highs",
    )
    if result.status == 2:
        raise LpInfeasibleError(
            f"the {variant} LP has no solution for classes "
            f"{[c.name for c in classes]} ({result.message})"
        )
    if result.status != 0:
        raise RuntimeError(f"HiGHS failed on the {variant} LP: {result.message}")
    sol = np.clip(result.x, 0.0, None)
    return LpSolution(
        variant=variant,
        saturated=saturated,
        classes=tuple(classes),
        params=params,
        prices=prices,
        x=sol[lp.x],
        y_mixed=sol[lp.ym],
        y_solo=sol[lp.ys],
        q_prefill=sol[lp.qp],
        q_decode=sol[lp.qd],
        revenue_per_gpu_s=float(-result.fun),
    )


class _LpBuilder:
    """Rows of the LP over the variables [x, y_m, y_s, q_p, q_d] (one block per kind)."""

    def __init__(self, classes: tuple[ClassSpec, ...], params: FluidParams) -> None:
        self.classes, self.params = classes, params
        k = len(classes)
        self.n_vars = 5 * k
        self.x, self.ym, self.ys, self.qp, self.qd = (
            np.arange(j * k, (j + 1) * k) for j in range(5)
        )
        self.mu_p = np.array([params.prefill_rate(c.prompt_tokens) for c in classes])
        self.mu_m = np.array([params.mixed_decode_rate(c.output_tokens) for c in classes])
        self.mu_s = np.array([params.solo_decode_rate(c.output_tokens) for c in classes])
        self.theta = np.array([c.abandonment for c in classes])
        self.lam = np.array([c.arrival_rate for c in classes])
        self.a_ub: list[np.ndarray] = []
        self.b_ub: list[float] = []
        self.a_eq: list[np.ndarray] = []
        self.b_eq: list[float] = []

    def _row(self, **blocks: np.ndarray | float) -> np.ndarray:
        row = np.zeros(self.n_vars)
        for name, coefficient in blocks.items():
            row[getattr(self, name)] = coefficient
        return row

    def capacity_rows(self) -> None:
        b = self.params.slots
        self.a_ub.append(self._row(x=1.0))  # sum x <= 1
        self.b_ub.append(1.0)
        self.a_ub.append(self._row(ym=1.0, x=-(b - 1.0)))  # sum y_m <= (B - 1) sum x
        self.b_ub.append(0.0)
        self.a_ub.append(self._row(ys=1.0, x=float(b)))  # sum y_s <= B (1 - sum x)
        self.b_ub.append(float(b))

    def flow_rows(self, saturated: bool) -> None:
        for i in range(len(self.classes)):
            if not saturated:  # lambda_i - theta_i q_p,i = mu_p,i x_i
                row = np.zeros(self.n_vars)
                row[self.x[i]], row[self.qp[i]] = self.mu_p[i], self.theta[i]
                self.a_eq.append(row)
                self.b_eq.append(float(self.lam[i]))
            row = np.zeros(self.n_vars)  # mu_p x - theta q_d - mu_m y_m - mu_s y_s = 0
            row[self.x[i]] = self.mu_p[i]
            row[self.qd[i]] = -self.theta[i]
            row[self.ym[i]], row[self.ys[i]] = -self.mu_m[i], -self.mu_s[i]
            self.a_eq.append(row)
            self.b_eq.append(0.0)

    def sli_rows(self, sli: SliConstraints, saturated: bool) -> None:
        tau, tau_solo = self.params.tau_mixed_s, self.params.tau_solo_s
        for i in range(len(self.classes)):
            if sli.min_served_fraction is not None and not saturated:
                # mu_m y_m + mu_s y_s >= f lambda
                row = np.zeros(self.n_vars)
                row[self.ym[i]], row[self.ys[i]] = -self.mu_m[i], -self.mu_s[i]
                self.a_ub.append(row)
                self.b_ub.append(-sli.min_served_fraction * float(self.lam[i]))
            if sli.max_tpot_s is not None:
                # mean time per output token of the class's decodes <= T:
                # mu_m y_m (tau - T) + mu_s y_s (tau_solo - T) <= 0
                row = np.zeros(self.n_vars)
                row[self.ym[i]] = self.mu_m[i] * (tau - sli.max_tpot_s)
                row[self.ys[i]] = self.mu_s[i] * (tau_solo - sli.max_tpot_s)
                self.a_ub.append(row)
                self.b_ub.append(0.0)

    def bounds(self, saturated: bool) -> list[tuple[float, float | None]]:
        """Queues are fixed at 0 when saturated or when nothing abandons (theta = 0: a queue
        term vanishes from its row, so it would be free)."""
        k = len(self.classes)
        queue = [(0.0, 0.0) if saturated or t == 0 else (0.0, None) for t in self.theta]
        free: list[tuple[float, float | None]] = [(0.0, None)] * (3 * k)
        return free + queue + queue  # [x, y_m, y_s] then q_p, q_d
