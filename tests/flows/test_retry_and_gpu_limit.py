"""Which failures the stage tasks retry, and the missing `gpu` limit's message."""

from __future__ import annotations

import pytest
from prefect.states import Failed

from blend.execute.stage import ExecuteError
from blend.ingest import IngestError
from blend.plan.stage import PlanError
from flows.execute import _require_limit
from flows.retry import GpuLimitMissingError, is_transient

pytestmark = [pytest.mark.prefect]


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (RuntimeError("engine died"), True),
        (MemoryError("KV cache"), True),
        (OSError("Could not set lock on file"), True),
        (IngestError("x.jsonl: no such file"), False),
        (PlanError("no profile"), False),
        (ExecuteError("tokenizer mismatch"), False),
        (GpuLimitMissingError("no gpu limit"), False),
        (ValueError("unknown planner"), False),
    ],
)
def test_only_transient_failures_are_retried(error: Exception, retry: bool) -> None:
    assert is_transient(None, None, Failed(data=error)) is retry


def test_a_missing_gpu_limit_names_the_command_that_creates_it(prefect_harness) -> None:
    _require_limit("gpu")  # the harness creates it, as local-up.sh does
    with pytest.raises(GpuLimitMissingError, match=r"`prefect gcl create gpu-9 --limit 1`"):
        _require_limit("gpu-9")
