"""Every entry point that takes a dataset name, run id, plan id or model folder refuses the
attack names: the CLI (typer), the flow parameter models (pydantic, what the Prefect form
submits) and the library functions - before anything is written anywhere."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from prefect.utilities.callables import parameter_schema
from pydantic import ValidationError
from typer.testing import CliRunner

from blend.cli import app
from blend.engines.base import EngineConfig
from blend.execute.stage import execute_plan
from blend.ingest import ingest_file
from blend.plan.stage import plan_dataset
from blend.profile.stage import profile_dataset
from blend.store.database import Store
from blend.store.lineage import LineageEvents, RunLineage
from blend.store.names import NAME_PATTERN, InvalidNameError
from blend.store.results import run_dir
from flows.execute import ExecuteFlowOptions
from flows.ingest import IngestOptions
from flows.options import ModelOptions
from flows.pipeline import PipelineOptions, pipeline_flow
from flows.plan import PlanFlowOptions
from flows.profile import ProfileOptions
from tests.support.attacks import (
    BAD_NAMES,
    DATASET,
    PLAN_ID,
    RUN_ID,
    tree_digest,
    write_jsonl,
)
from tests.support.cli_text import flat

runner = CliRunner()
ATTACKS = sorted(BAD_NAMES)
# Model folders are paths (anywhere is fine); their last part becomes the `model` name.
BAD_FOLDER_NAMES = ["my model", "x'; drop table prompts;--", "d\u0435mo", "-rf", "a" * 129]


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, flat(result.output)


# --- CLI -------------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", ATTACKS)
def test_cli_stage_commands_refuse_bad_dataset_names(tmp_path: Path, attack: str) -> None:
    store = tmp_path / "store"
    source = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "hello"}])
    bad = f"--dataset={BAD_NAMES[attack]}"
    for args in (
        ["ingest", str(source), bad],
        ["profile", bad],
        ["plan", bad],
        ["run", str(source), bad],
    ):
        code, output = cli(*args, "--store", str(store))
        assert code == 2, (args, output)
        assert "Invalid value for '--dataset'" in output and "invalid dataset name" in output
    assert not store.exists()  # refused before the store was even opened
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.parametrize("attack", ATTACKS)
def test_cli_execute_refuses_bad_plan_and_run_ids(tmp_path: Path, attack: str) -> None:
    store = tmp_path / "store"
    code, output = cli("execute", f"--plan-id={BAD_NAMES[attack]}", "--store", str(store))
    assert code == 2 and "invalid plan id" in output, output
    code, output = cli(
        "execute", "--plan-id", PLAN_ID, f"--run-id={BAD_NAMES[attack]}", "--store", str(store)
    )
    assert code == 2 and "invalid run id" in output, output
    assert not store.exists()


@pytest.mark.parametrize("stem", ["my data", "d\u0435mo", "a..b", "x'; drop"])
def test_cli_run_refuses_a_file_stem_that_is_no_dataset_name(tmp_path: Path, stem: str) -> None:
    source = write_jsonl(tmp_path / f"{stem}.jsonl", [{"prompt": "hello"}])
    code, output = cli("run", str(source), "--store", str(tmp_path / "store"))
    assert code == 2, output
    assert "invalid dataset name" in output and "--dataset" in output


@pytest.mark.parametrize("folder", BAD_FOLDER_NAMES)
def test_cli_refuses_a_model_folder_whose_name_breaks_the_rule(
    tmp_path: Path, tiny_model: Path, folder: str
) -> None:
    model = tmp_path / folder
    model.mkdir()
    shutil.copy(tiny_model / "config.json", model)  # all `--model` checks before the name
    code, output = cli(
        "profile", "--dataset", DATASET, "--model", str(model), "--store", str(tmp_path / "s")
    )
    assert code == 2, output
    assert "Invalid value for --model" in output and "invalid model name" in output


# --- flow parameters (the Prefect form) ---------------------------------------------------------


def flow_models(value: str) -> list[tuple[type, dict]]:
    return [
        (IngestOptions, {"input_path": "in.jsonl", "dataset": value}),
        (ProfileOptions, {"dataset": value}),
        (PlanFlowOptions, {"dataset": value}),
        (ExecuteFlowOptions, {"plan_id": value}),
        (ExecuteFlowOptions, {"plan_id": PLAN_ID, "run_id": value}),
        (PipelineOptions, {"dataset": value}),
    ]


@pytest.mark.parametrize("attack", ATTACKS)
def test_flow_parameter_models_refuse_bad_names(attack: str) -> None:
    for model, fields in flow_models(BAD_NAMES[attack]):
        with pytest.raises(ValidationError, match=r"invalid (dataset name|plan id|run id)"):
            model(**fields)


def test_flow_parameter_models_accept_good_names() -> None:
    good = "demo-s1-dfs-0a1b2c3d"
    for model, fields in flow_models(good):
        made = model(**fields)
        named = [name for name, value in fields.items() if value == good]
        assert named and all(getattr(made, name) == good for name in named), model


def test_pipeline_options_check_the_file_stem_used_as_dataset_name() -> None:
    with pytest.raises(ValidationError, match="stem of input_path"):
        PipelineOptions(input_path="/data/my prompts.jsonl")
    assert PipelineOptions(input_path="/data/my prompts.jsonl", dataset="prompts").dataset
    assert PipelineOptions(input_path="/data/prompts.jsonl").input_path


@pytest.mark.parametrize("folder", [*BAD_FOLDER_NAMES, "/models/a\x00b"])
def test_flow_model_option_refuses_bad_folder_names(folder: str) -> None:
    with pytest.raises(ValidationError, match="model"):
        ModelOptions(model=folder if folder.startswith("/") else f"/models/{folder}")


def test_the_prefect_form_schema_carries_the_rule() -> None:
    schema = IngestOptions.model_json_schema()["properties"]["dataset"]
    assert schema["pattern"] == NAME_PATTERN and schema["maxLength"] == 128
    # what the deployment's form is built from (and the server checks runs against)
    form = parameter_schema(pipeline_flow.fn).model_dump()["definitions"]["PipelineOptions"]
    assert form["properties"]["dataset"]["pattern"] == NAME_PATTERN
    assert re.fullmatch(NAME_PATTERN.strip("^$"), "demo")
    assert not re.fullmatch(NAME_PATTERN.strip("^$"), "../x")


# --- library functions ---------------------------------------------------------------------


@pytest.mark.parametrize("attack", ATTACKS)
def test_library_functions_refuse_bad_names_before_writing(
    filled_store: Store, tmp_path: Path, tiny_model: Path, attack: str
) -> None:
    bad = BAD_NAMES[attack]
    before = tree_digest(tmp_path)
    source = tmp_path / "in.jsonl"
    config = EngineConfig(model_dir=tiny_model)
    calls = {
        "ingest_file": lambda: ingest_file(filled_store, source, bad),
        "profile_dataset": lambda: profile_dataset(filled_store, bad, tiny_model),
        "plan_dataset": lambda: plan_dataset(filled_store, bad),
        "execute_plan(plan_id)": lambda: execute_plan(filled_store, bad, config),
        "execute_plan(run_id)": lambda: execute_plan(filled_store, PLAN_ID, config, run_id=bad),
        "run_dir(dataset)": lambda: run_dir(filled_store.results_dir, bad, RUN_ID),
        "run_dir(run_id)": lambda: run_dir(filled_store.results_dir, DATASET, bad),
        "lineage events": lambda: (
            LineageEvents(
                "file", filled_store.root, lineage(bad), filled_store.results_dir
            ).events_path
        ),
    }
    for where, call in calls.items():
        with pytest.raises(InvalidNameError, match=r"invalid (dataset name|run id|plan id)"):
            call()
            pytest.fail(f"{where} accepted {bad!r}")
    assert tree_digest(tmp_path) == before


def lineage(run_id: str) -> RunLineage:
    return RunLineage(
        run_id=run_id,
        plan_id=PLAN_ID,
        dataset=DATASET,
        snapshot=1,
        planner="dfs",
        model="tiny",
        model_sha256="m",
        tokenizer_sha256="t",
        engine="fake",
        engine_version="0",
        engine_params_json="{}",
        flow_run_id=None,
        deployment_name=None,
        git_revision=None,
    )
