"""A K-engine execute holds K slots of the `gpu` limit (one per GPU it runs on)."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from flows.execute import _gpu_slot

pytestmark = [pytest.mark.prefect]


def test_k_engines_hold_k_gpu_slots(prefect_harness) -> None:
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name="gpu-four", limit=4)
        )
        with _gpu_slot("gpu-four", 3):
            held = client.read_global_concurrency_limit_by_name("gpu-four").active_slots
        after = client.read_global_concurrency_limit_by_name("gpu-four").active_slots
    assert (held, after) == (3, 0)
