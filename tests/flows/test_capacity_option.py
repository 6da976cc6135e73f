"""The pipeline flow's capacity_deadline: validated on the form, handed to the library, and
its report published as soon as the capacity stage returns."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from bench.workloads.generators import default_cost
from blend.plan.capacity import CapacityReport, pipeline_capacity
from blend.store.database import Store
from flows import pipeline as pipeline_module
from flows.pipeline import PipelineOptions, stage_runner
from tests.support.seeds import seed_groups


def test_the_deadline_reaches_the_library_options() -> None:
    options = PipelineOptions(capacity_deadline="06:00", capacity_max_engines=4)
    library = options.pipeline_options()
    assert library.capacity_deadline == "06:00" and library.capacity_max_engines == 4
    assert PipelineOptions().pipeline_options().capacity_deadline is None


@pytest.mark.parametrize("bad", ["6:00", "24:00", "06:60", "6am"])
def test_a_deadline_that_is_no_time_of_day_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="capacity_deadline"):
        PipelineOptions(capacity_deadline=bad)


def test_the_capacity_stage_is_published_when_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path)
    seed_groups(store, "tok")
    published: list[CapacityReport] = []
    monkeypatch.setattr(pipeline_module, "publish_capacity", published.append)
    run_stage = stage_runner(None)
    report = run_stage(
        "capacity",
        pipeline_capacity,
        store,
        "ds",
        "06:00",
        default_cost(),
        model_sha256="no-such-model",
        incremental=True,
        max_engines=2,
    )
    assert published == [report]
    assert report.dataset == "ds" and report.n_requests == 24
    assert report.start <= datetime.now().astimezone() < report.deadline
    assert [p.k for p in report.predictions] == [1, 2]
