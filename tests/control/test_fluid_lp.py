"""The fluid LP: its constraints hold at the optimum, and it matches closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from blend.control.fluid_lp import (
    ClassSpec,
    FluidParams,
    LpInfeasibleError,
    LpVariant,
    Prices,
    SliConstraints,
    solve_fluid_lp,
)

PAPER = FluidParams(
    alpha_s=0.0174, beta_s_per_token=6.2e-5, gamma_tok_s=45.45, slots=16, chunk_tokens=256
)
PAPER_PRICES = Prices(prefill_per_token=0.1, decode_per_token=0.2)


def paper_classes(rate: float = 0.5) -> list[ClassSpec]:
    return [
        ClassSpec("short-prompt", 300, 1000, arrival_rate=rate, abandonment=0.1),
        ClassSpec("long-prompt", 3000, 400, arrival_rate=rate, abandonment=0.1),
    ]


def assert_feasible(sol, saturated: bool) -> None:
    b, tol = sol.params.slots, 1e-7
    assert sol.x.sum() <= 1 + tol
    assert sol.y_mixed.sum() <= (b - 1) * sol.x.sum() + tol
    assert sol.y_solo.sum() <= b * (1 - sol.x.sum()) + tol
    theta = np.array([c.abandonment for c in sol.classes])
    # decode flow: what is prefilled is decoded or waits (and abandons) for a slot
    np.testing.assert_allclose(
        sol.prefill_rate - theta * sol.q_decode, sol.completion_rate, rtol=1e-6, atol=1e-9
    )
    if not saturated:
        lam = np.array([c.arrival_rate for c in sol.classes])
        np.testing.assert_allclose(lam - theta * sol.q_prefill, sol.prefill_rate, atol=1e-9)


def mixed_decodes(sol) -> float:
    """Decodes finished per second on mixed GPUs, all classes."""
    return float((sol.completion_rate * (1 - sol.solo_route_probability)).sum())


@pytest.mark.parametrize("variant", list(LpVariant))
def test_every_variant_meets_its_constraints(variant: LpVariant) -> None:
    sli = (
        SliConstraints(min_served_fraction=0.5, max_tpot_s=0.03) if variant == "sli-aware" else None
    )
    sol = solve_fluid_lp(paper_classes(), PAPER, PAPER_PRICES, variant, sli)
    assert_feasible(sol, saturated=False)
    # R* is what the solution's own flows earn at the prices, as the variant counts them
    prompt = np.array([c.prompt_tokens for c in sol.classes])
    output = np.array([c.output_tokens for c in sol.classes])
    c_p, c_d = PAPER_PRICES.prefill_per_token, PAPER_PRICES.decode_per_token
    if variant == "per-phase":
        earned = c_p * prompt @ sol.prefill_rate + c_d * output @ sol.completion_rate
    else:
        earned = (c_p * prompt + c_d * output) @ sol.completion_rate
    assert earned > 0 and sol.revenue_per_gpu_s == pytest.approx(earned, rel=1e-6)
    if sli is not None:
        lam = np.array([c.arrival_rate for c in sol.classes])
        assert np.all(sol.completion_rate >= 0.5 * lam - 1e-9)


def test_light_load_serves_everything() -> None:
    classes = paper_classes(rate=0.01)
    sol = solve_fluid_lp(classes, PAPER, PAPER_PRICES)
    np.testing.assert_allclose(sol.completion_rate, [0.01, 0.01], rtol=1e-6)
    np.testing.assert_allclose(sol.q_prefill, 0, atol=1e-9)
    value = [0.1 * c.prompt_tokens + 0.2 * c.output_tokens for c in classes]
    assert sol.revenue_per_gpu_s == pytest.approx(0.01 * sum(value), rel=1e-6)


def test_saturated_single_class_matches_the_closed_form() -> None:
    """One backlogged class: prefill output equals decode capacity at the optimum, so
    x mu_p = (B - 1) x mu_m + B (1 - x) mu_s."""
    cls = ClassSpec("only", prompt_tokens=500, output_tokens=200)
    sol = solve_fluid_lp([cls], PAPER, saturated=True)
    mu_p, mu_m, mu_s = (
        PAPER.prefill_rate(500),
        PAPER.mixed_decode_rate(200),
        PAPER.solo_decode_rate(200),
    )
    b = PAPER.slots
    x = b * mu_s / (mu_p - (b - 1) * mu_m + b * mu_s)
    assert sol.x[0] == pytest.approx(x, rel=1e-6)
    assert sol.completion_rate[0] == pytest.approx(x * mu_p, rel=1e-6)
    assert sol.throughput_tok_s == pytest.approx(700 * x * mu_p, rel=1e-6)
    assert_feasible(sol, saturated=True)


def test_tpot_limit_moves_decodes_to_solo_gpus() -> None:
    loose = solve_fluid_lp(
        paper_classes(), PAPER, PAPER_PRICES, LpVariant.SLI_AWARE, SliConstraints()
    )
    # between a solo iteration (22 ms) and a mixed one (33 ms): mixed decodes must be rare
    tpot = 0.024
    tight = solve_fluid_lp(
        paper_classes(), PAPER, PAPER_PRICES, LpVariant.SLI_AWARE, SliConstraints(max_tpot_s=tpot)
    )
    for sol in (loose, tight):
        assert_feasible(sol, saturated=False)
    assert mixed_decodes(tight) < mixed_decodes(loose)
    tau, tau_solo = PAPER.tau_mixed_s, PAPER.tau_solo_s
    p_solo = tight.solo_route_probability
    served = tight.completion_rate > 0
    assert np.all((p_solo * tau_solo + (1 - p_solo) * tau)[served] <= tpot + 1e-9)
    assert tight.revenue_per_gpu_s <= loose.revenue_per_gpu_s + 1e-9


def test_impossible_slis_are_named() -> None:
    sli = SliConstraints(min_served_fraction=0.9, max_tpot_s=0.5 * PAPER.tau_solo_s)
    with pytest.raises(LpInfeasibleError, match="sli-aware LP has no solution"):
        solve_fluid_lp(paper_classes(), PAPER, PAPER_PRICES, LpVariant.SLI_AWARE, sli)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ClassSpec("bad", 0, 10), "class 'bad': prompt and output tokens must be > 0"),
        (lambda: ClassSpec("bad", 10, 10, arrival_rate=-1), "lambda=-1"),
        (lambda: FluidParams(0.01, 1e-4, 40, slots=1, chunk_tokens=256), "slots must be >= 2"),
        (lambda: FluidParams(0.01, 1e-4, 0, slots=8, chunk_tokens=256), "gamma > 0"),
        (lambda: solve_fluid_lp([], PAPER), "no request classes"),
        (
            lambda: solve_fluid_lp(paper_classes(), PAPER, sli=SliConstraints(max_tpot_s=1)),
            "sli-aware variant",
        ),
    ],
)
def test_bad_input_is_named(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()
