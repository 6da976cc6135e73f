"""Shared fixtures: the tiny local model (built once per session) and fresh stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blend.demo.model import ensure_tiny_model
from blend.store import Store


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_model(tmp_path_factory.mktemp("models"))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store")


@pytest.fixture(autouse=True, scope="session")
def _quiet_services() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
