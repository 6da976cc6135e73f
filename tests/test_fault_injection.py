"""Fault injection on the real stack: SIGKILL the execute stage, resume, exactly one row each.

The execute stage runs in a child process on the vLLM CPU engine with the tiny local model, on
a BlendServe plan: killed during its warm-up, right after its re-plan is stored, and at a
random row, re-run with its run id or (plain re-run) without; bench/fault_injection.py (the
same code, more kill points) prints lost/duplicated.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.engine

BENCH = Path(__file__).resolve().parents[1] / "bench" / "fault_injection.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fault_injection", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_killed_runs_resume_without_loss_or_duplicates(tmp_path: Path, tiny_model: Path) -> None:
    """The re-runs take turns: with the run id, then without it (the killed run, left
    `running`, must be found dead and continued), so both ways of resuming meet every kill
    point in one sequence of engine starts."""
    bench = load_bench()
    store_dir = tmp_path / "store"
    seed = 7
    plan_id = bench.prepare(store_dir, tiny_model, n_requests=48, seed=seed)
    kinds = ("warmup", "replan", "rows")
    outcome = bench.run_with_kills(
        store_dir, plan_id, tiny_model, 3, seed, kinds, plain_rerun="alternate"
    )
    assert outcome.n_runs == 1  # every re-run continued the one run
    assert outcome.kinds == kinds  # killed during the warm-up, after the re-plan, anywhere
    assert (outcome.n_planned, outcome.n_rows) == (48, 48)
    assert (outcome.lost, outcome.duplicated) == (0, 0)
    assert outcome.run_status == "completed"
    assert outcome.leftover_temporary == 0
    assert outcome.n_revisions == 1  # re-planned once, the resumes read it back
