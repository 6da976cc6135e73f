"""When a failed task is worth retrying: anything but the library's "cannot do this as asked".

Ingest, profile and plan are idempotent (same file -> same snapshot; profile rows are
replaced; a plan is one transaction) and execute resumes by run id, so a retry never
duplicates work. Their usual transient failures: the DuckDB file held by another process,
an engine that died (out of memory, a lost GPU), the API briefly unreachable. A bad input,
a missing profile or a tokenizer mismatch fails the same way every time: no retry.
"""

from __future__ import annotations

from typing import Any

from blend.execute.stage import ExecuteError
from blend.ingest import IngestError
from blend.plan.stage import PlanError
from blend.store.store_lock import StoreNotWritableError


class GpuLimitMissingError(RuntimeError):
    """The global concurrency limit the execute task must hold does not exist."""


PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    IngestError,
    PlanError,
    ExecuteError,
    GpuLimitMissingError,
    StoreNotWritableError,  # a read-only store or folder stays so on a retry
    ValueError,
    TypeError,
)


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry unless the task failed with a permanent error."""
    return not isinstance(state.data, PERMANENT_ERRORS)
