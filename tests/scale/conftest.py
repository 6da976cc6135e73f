"""One local Ray cluster (2 CPUs) per test module, and a plan of 40 prompts to run on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blend.engines.base import EngineConfig
from blend.engines.tokenize import tokenizer_sha256
from blend.plan.stage import PlanOptions, plan_dataset
from blend.store.database import Store
from tests.support.seeds import seed_groups

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A local Ray cluster with 2 CPUs; its workers import this checkout (blend, tests.support)."""
    ray = pytest.importorskip("ray")
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), path]))
    # "local": a cluster of this test process, never the latest one on the machine (which
    # is another test worker's when the suite runs in parallel, `pytest -n 2`)
    ray.init(
        address="local",
        num_cpus=2,
        namespace="blend",
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()
        if path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = path


@pytest.fixture
def planned_groups(store: Store, tiny_model: Path) -> tuple[Store, str, EngineConfig, list]:
    """Two prefix groups of 20 prompts each, planned depth-first without a warm-up."""
    rows = seed_groups(store, tokenizer_sha256(tiny_model), per_group=20)
    options = PlanOptions(planner="dfs", warmup_fraction=0.0)
    plan = plan_dataset(store, "ds", options, model_dir=tiny_model)
    return store, plan.plan_id, EngineConfig(model_dir=tiny_model), rows
