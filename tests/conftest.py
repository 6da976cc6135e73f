"""Shared fixtures: the tiny local model (built once per session), fresh stores and a toy cost
model. Helpers that tests call with arguments (fake engines, toy cost models, store seeds)
live in tests/support/, which test modules import; no test module imports another."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from blend.cli import verbosity
from blend.cost.model import CostModel
from blend.demo.model import ensure_tiny_model
from blend.store.database import Store
from tests.support.toys import toy_cost

# Property tests judge results, never speed: no per-example deadline, which a loaded CI
# machine would turn into failures that say nothing about the code.
settings.register_profile("blend", deadline=None)
settings.load_profile("blend")


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


@pytest.fixture(autouse=True)
def _restore_verbosity() -> Iterator[None]:
    """A command run in a test sets the CLI's verbosity for the process (environment and the
    libraries' loggers): put both back, so no test depends on which ran before it."""
    names = {*verbosity.QUIET_ENV, *verbosity.VERBOSE_ENV}
    env = {name: os.environ.get(name) for name in names}
    levels = {name: logging.getLogger(name).level for name in verbosity.THIRD_PARTY_LOGGERS}
    yield
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
