"""The paper's convergence setting (arXiv 2602.02987), for the fleet tests."""

from __future__ import annotations

from blend.control.fluid_lp import ClassSpec, FluidParams, Prices

PAPER = FluidParams(
    alpha_s=0.0174, beta_s_per_token=6.2e-5, gamma_tok_s=45.45, slots=16, chunk_tokens=256
)
PAPER_PRICES = Prices(prefill_per_token=0.1, decode_per_token=0.2)


def paper_classes(rate: float = 0.5) -> list[ClassSpec]:
    """The two classes, each arriving at `rate` requests/s per GPU, abandoning at 0.1/s."""
    return [
        ClassSpec("short-prompt", 300, 1000, arrival_rate=rate, abandonment=0.1),
        ClassSpec("long-prompt", 3000, 400, arrival_rate=rate, abandonment=0.1),
    ]
