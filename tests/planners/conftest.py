"""The planners' toy cost model (tests/support/toys.py)."""

from __future__ import annotations

import pytest

from blend.cost.model import CostModel
from tests.support.toys import planner_toy_cost


@pytest.fixture
def cost() -> CostModel:
    return planner_toy_cost()
