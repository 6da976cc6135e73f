"""The pipeline's capacity_deadline: after the plan, before executing, the capacity of what
the run is about to execute is predicted and reported (with the fake engine)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from blend.demo.dataset import DemoSize, write_demo_dataset
from blend.engines.base import EngineConfig
from blend.pipeline.chain import PipelineOptions, run_pipeline
from blend.plan.stage import PlanOptions
from blend.store.database import Store
from tests.support.fault_child import fake_engine_stages


def test_the_pipeline_reports_the_capacity_before_it_executes(
    tmp_path: Path, tiny_model: Path
) -> None:
    source = write_demo_dataset(tmp_path / "nightly.jsonl", DemoSize.small(), seed=3)
    stages: list[str] = []
    fake = fake_engine_stages(0.0)

    def run_stage(name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        stages.append(name)
        return fake(name, fn, *args, **kwargs)

    plan = PlanOptions(planner="blendserve", hardware="cpu-local", warmup_fraction=0.0)
    report = run_pipeline(
        Store.open(tmp_path / "store"),
        EngineConfig(model_dir=tiny_model),
        PipelineOptions(
            input_path=source, dataset="d", plan=plan, capacity_deadline="06:00",
            capacity_max_engines=2,
        ),
        run_stage=run_stage,
    )  # fmt: skip
    assert stages == ["ingest", "profile", "plan", "capacity", "execute"]
    capacity = report.capacity
    assert capacity is not None and capacity.dataset == "d"
    # the demo's one prompt over the model's context is in the plan (its error row) but no
    # work in either: the plan does not price it and the capacity does not simulate it
    assert report.plan.n_over_length == capacity.n_over_length == 1
    assert capacity.n_requests == report.plan.n_requests - 1
    assert capacity.hardware == "cpu-local"
    assert [p.k for p in capacity.predictions] == [1, 2]
    assert report.run is not None and report.run.status == "completed"
