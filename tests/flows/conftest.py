"""Prefect fixtures: the in-process test harness, and a real `prefect server start` set up by
deployments/local-up.sh (work pool, `gpu` limit, deployment, worker) for end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectNotFound
from prefect.testing.utilities import prefect_test_harness

from tests.support.local_prefect import LocalPrefect, local_prefect_up


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server (SQLite) for the whole session, with the `gpu` limit."""
    with prefect_test_harness(server_startup_timeout=120):
        ensure_gpu_limit()
        yield


def ensure_gpu_limit(slots: int = 1) -> None:
    """Create the `gpu` global concurrency limit the execute task holds, if missing."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name("gpu")
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name="gpu", limit=slots)
            )


@pytest.fixture(scope="module")
def local_prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrefect]:
    """deployments/local-up.sh on a free port with PREFECT_HOME in tmp; local-down.sh after."""
    with local_prefect_up(tmp_path_factory.mktemp("prefect")) as local:
        yield local
