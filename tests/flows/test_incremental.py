"""Incremental planning (what the nightly deployment relies on), on the real ingest, profile
and plan stages with the tiny model's tokenizer, and a fake engine for the execute stage.

A prompt is left out when the same model already answered the same prompt_sha256 with the same
sampling_json (any run), or when its only rows are the error rows of a prompt longer than the
context; any other error row is planned again.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from blend.demo.dataset import DemoSize, write_demo_dataset
from blend.engines.base import EngineConfig, EngineOutput, EngineRequest
from blend.execute.stage import execute_plan
from blend.ingest import ingest_file
from blend.plan.stage import PlanOptions, PlanReport, plan_dataset
from blend.profile.stage import profile_dataset
from blend.store.database import Store
from blend.store.lineage import model_sha256
from tests.support.fake_engine import FakeEngine

OVER_LENGTH_ID = "summarise-001"  # the small demo's prompt longer than the tiny model's context


class FlakyEngine(FakeEngine):
    """The fake engine, with an error row (not a length error) for the ids in `fail_ids`."""

    fail_ids: frozenset[str] = frozenset()

    def _output(self, request: EngineRequest) -> EngineOutput:
        output = super()._output(request)
        if request.request_id not in self.fail_ids:
            return output
        return dataclasses.replace(
            output, output_text=None, output_token_ids=None, error="engine step failed"
        )


@dataclasses.dataclass
class Nightly:
    store: Store
    model: Path
    fail_ids: frozenset[str] = frozenset()

    def run(self, input_path: Path, *, incremental: bool = True) -> PlanReport:
        """ingest -> profile -> plan -> execute (fake engine), as the pipeline flow does."""
        ingested = ingest_file(self.store, input_path, "nightly")
        profile = profile_dataset(self.store, "nightly", self.model, snapshot=ingested.snapshot)
        plan = plan_dataset(
            self.store,
            "nightly",
            PlanOptions(planner="dfs"),
            snapshot=ingested.snapshot,
            model_sha256=model_sha256(self.model),
            incremental=incremental,
            model_dir=self.model,
        )
        if plan.n_requests:
            FlakyEngine.fail_ids = self.fail_ids
            execute_plan(
                self.store,
                plan.plan_id,
                EngineConfig(model_dir=self.model),
                engine_factory=lambda c: FlakyEngine(c, max_model_len=profile.max_model_len),
            )
        return plan


@pytest.fixture
def nightly(store: Store, tiny_model: Path) -> Nightly:
    return Nightly(store, tiny_model)


def planned_ids(store: Store, plan_id: str) -> list[str]:
    with store.connect() as con:
        rows = con.execute(
            "SELECT request_id FROM plan_items WHERE plan_id = ? ORDER BY request_id", [plan_id]
        ).fetchall()
    return [r[0] for r in rows]


def test_same_input_again_plans_nothing(nightly: Nightly, tmp_path: Path) -> None:
    path = write_demo_dataset(tmp_path / "nightly.jsonl", DemoSize.small(), seed=3)
    first = nightly.run(path)
    second = nightly.run(path)
    assert (first.n_requests, first.n_already_done) == (34, 0)
    assert (second.n_requests, second.n_already_done, second.n_batches) == (0, 34, 0)
    assert nightly.run(path, incremental=False).n_requests == 34  # --full


def test_changed_input_plans_only_new_and_changed_prompts(nightly: Nightly, tmp_path: Path) -> None:
    path = write_demo_dataset(tmp_path / "nightly.jsonl", DemoSize.small(), seed=3)
    nightly.run(path)
    lines = path.read_text().splitlines()
    changed = json.loads(lines[0])
    changed["prompt"] += " Answer briefly."  # same id, new text: a new prompt_sha256
    resampled = json.loads(lines[1])
    resampled["temperature"] = 0.5  # same text, other sampling
    new = {"custom_id": "new-001", "prompt": "A new prompt for tonight.", "max_tokens": 4}
    lines[0], lines[1] = json.dumps(changed), json.dumps(resampled)
    path.write_text("\n".join([*lines, json.dumps(new)]) + "\n")
    plan = nightly.run(path)
    assert plan.snapshot == 2
    assert planned_ids(nightly.store, plan.plan_id) == sorted(
        [changed["custom_id"], resampled["custom_id"], "new-001"]
    )
    assert plan.n_already_done == 35 - 3


def test_error_rows_are_retried_unless_the_prompt_can_never_run(
    nightly: Nightly, tmp_path: Path
) -> None:
    path = write_demo_dataset(tmp_path / "nightly.jsonl", DemoSize.small(), seed=3)
    flaky_id = json.loads(path.read_text().splitlines()[2])["custom_id"]
    nightly.fail_ids = frozenset({flaky_id})
    nightly.run(path)
    nightly.fail_ids = frozenset()
    retried = nightly.run(path)
    assert planned_ids(nightly.store, retried.plan_id) == [flaky_id]  # not OVER_LENGTH_ID
    assert nightly.run(path).n_requests == 0


def test_other_models_results_do_not_count(nightly: Nightly, tmp_path: Path) -> None:
    path = write_demo_dataset(tmp_path / "nightly.jsonl", DemoSize.small(), seed=3)
    nightly.run(path)
    other = plan_dataset(
        nightly.store,
        "nightly",
        PlanOptions(planner="fcfs"),
        model_sha256="0" * 64,
        incremental=True,
        model_dir=nightly.model,
    )
    assert (other.n_requests, other.n_already_done) == (34, 0)
    assert OVER_LENGTH_ID in planned_ids(nightly.store, other.plan_id)
