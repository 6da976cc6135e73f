"""The flow's vLLM engine arguments (checked by vLLM before any stage, priced in the plan)
and its optional last task, the export (the file `blend export` writes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from blend.demo.dataset import DemoSize, write_demo_dataset
from blend.engines.vllm_options import EngineOptionsError
from blend.store.database import Store
from blend.store.export import ExportFormat, export_results
from flows.options import EngineOptions, PlanningOptions, VllmOptions
from flows.pipeline import PipelineOptions, pipeline_flow
from tests.support.fake_engine import FakeEngine


def test_engine_arguments_reach_the_config_checked_by_vllm(tiny_model: Path) -> None:
    engine = EngineOptions(
        vllm=VllmOptions(dtype="float32", max_model_len=256, engine_args={"max_logprobs": "3"})
    )
    config = engine.engine_config(tiny_model)
    assert config.dtype == "float32" and config.max_model_len == 256
    assert dict(config.engine_args) == {"max_logprobs": 3}
    assert EngineOptions().engine_config(tiny_model).engine_args == {}
    bad = EngineOptions(vllm=VllmOptions(engine_args={"no_such_argument": "1"}))
    with pytest.raises(EngineOptionsError, match="no-such-argument"):
        bad.engine_config(tiny_model)


def test_the_plan_is_priced_for_the_engines_gpus() -> None:
    options = PipelineOptions(engine=EngineOptions(vllm=VllmOptions(tensor_parallel_size=4)))
    assert options.pipeline_options().plan.tensor_parallel_size == 4
    assert PipelineOptions().pipeline_options().plan.tensor_parallel_size == 1


def test_an_export_format_needs_a_target() -> None:
    with pytest.raises(ValidationError, match="give both or neither"):
        PipelineOptions(export_format=ExportFormat.JSONL)


@pytest.mark.prefect
def test_the_flow_ends_with_the_export(
    prefect_harness: None, tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import blend.engines.vllm_engine

    monkeypatch.setattr(
        blend.engines.vllm_engine, "VllmEngine", lambda c: FakeEngine(c, max_model_len=1024)
    )
    input_path = write_demo_dataset(tmp_path / "nightly.jsonl", DemoSize.small(), seed=3)
    out = tmp_path / "out" / "answers.jsonl"
    out.parent.mkdir()
    options = PipelineOptions(
        input_path=str(input_path),
        store=str(tmp_path / "store"),
        model=str(tiny_model),
        planning=PlanningOptions(warmup_fraction=0.0),
        export_format=ExportFormat.OPENAI_BATCH,
        export_out=str(out),
    )
    state = pipeline_flow(options, return_state=True)
    assert state.is_completed(), state
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 34  # every answered request of the demo's 34 prompts
    assert sum(line["error"] is not None for line in lines) == 1  # the over-length one
    again = export_results(
        Store.open(tmp_path / "store"), "nightly", tmp_path / "cli.jsonl", ExportFormat.OPENAI_BATCH
    )
    assert again.n_rows == 34
    by_id = {line["custom_id"]: line for line in lines}
    for line in (tmp_path / "cli.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert by_id[row["custom_id"]]["response"] == row["response"]  # what blend export writes
