"""Shared fixtures: the tiny local model (built once per session), fresh stores and a toy cost
model. Helpers that tests call with arguments (fake engines, toy cost models, store seeds)
live in tests/support/, which test modules import; no test module imports another."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blend.cost import CostModel
from blend.demo.model import ensure_tiny_model
from blend.store import Store
from tests.support.toys import toy_cost


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_model(tmp_path_factory.mktemp("models"))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store")


@pytest.fixture
def memory_bound_cost() -> CostModel:
    """The toy model with free compute (1e15 FLOP/s): each step costs 1 s of weights + 2 s
    per KV token."""
    return toy_cost(flops=1e15, bandwidth=1.0)


@pytest.fixture(autouse=True, scope="session")
def _quiet_services() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
