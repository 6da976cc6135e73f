"""The bundled LP of the paper's setting, solved once per session."""

from __future__ import annotations

import pytest

from blend.control.fluid_lp import LpSolution, solve_fluid_lp
from tests.support.fleet_paper import PAPER, PAPER_PRICES, paper_classes


@pytest.fixture(scope="session")
def paper_lp() -> LpSolution:
    """R* ~ 297.7 per GPU per second."""
    return solve_fluid_lp(paper_classes(), PAPER, PAPER_PRICES)
