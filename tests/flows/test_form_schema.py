"""The pipeline flow's parameter schema, what Prefect builds its "Run > Custom run" form from
(and what its server checks runs against): fields in reading order, human titles, optional
fields as plain inputs, and the server's own validation still taking null and refusing bad
values. The rendered form is checked in a browser in test_form_ui.py."""

from __future__ import annotations

from typing import Any, ClassVar

import jsonschema
import pytest
import yaml
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import ValidationError, validate
from pydantic import Field

from flows.execute import ExecuteFlowOptions, execute_flow
from flows.ingest import IngestOptions, ingest_flow
from flows.options import EngineOptions, FormOptions, PlanningOptions, VllmOptions
from flows.pipeline import PipelineOptions, pipeline_flow
from flows.plan import PlanFlowOptions, plan_flow
from flows.profile import ProfileOptions, profile_flow
from tests.support.local_prefect import REPO

FLOWS = [pipeline_flow, execute_flow, ingest_flow, plan_flow, profile_flow]
FORM_MODELS = [
    PipelineOptions,
    PlanningOptions,
    EngineOptions,
    ExecuteFlowOptions,
    IngestOptions,
    PlanFlowOptions,
    ProfileOptions,
]


def form(flow: Any = pipeline_flow) -> dict[str, Any]:
    return parameter_schema(flow.fn).model_dump_for_openapi()


def in_form_order(properties: dict[str, Any]) -> list[str]:
    """The names as the form shows them: sorted by `position`."""
    return sorted(properties, key=lambda name: properties[name]["position"])


def test_the_fields_come_in_reading_order() -> None:
    schema = form()
    assert schema["required"] == ["options"]  # no "options: PipelineOptions or None" choice
    properties = schema["definitions"]["PipelineOptions"]["properties"]
    assert (
        in_form_order(properties)
        == list(properties)
        == [
            *("input_path", "dataset", "model", "incremental"),  # what to run on
            "planning",
            *("engine", "engines", "gpu_limit"),  # the engine and the execution
            *("capacity_deadline", "capacity_max_engines"),
            *("store", "results_uri", "export_format", "export_out"),  # outputs
        ]
    )
    engine = schema["definitions"]["EngineOptions"]["properties"]
    assert in_form_order(engine)[0] == "engine"


@pytest.mark.parametrize("model", FORM_MODELS, ids=lambda m: m.__name__)
def test_every_field_has_a_title_and_a_description(model: type[FormOptions]) -> None:
    for name, field in model.model_fields.items():
        assert field.title, (model.__name__, name)  # not pydantic's "Kv Cache Gib"
        group = isinstance(field.annotation, type) and issubclass(field.annotation, FormOptions)
        assert field.description or (group and field.annotation.__doc__), (model.__name__, name)


def test_the_titles_read_as_words() -> None:
    properties = form()["definitions"]["EngineOptions"]["properties"]
    assert properties["kv_cache_gib"]["title"] == "KV cache (GiB)"
    assert properties["max_num_seqs"]["title"] == "Requests per step"


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.name)
def test_no_optional_field_opens_on_a_none_choice(flow: Any) -> None:
    """`anyOf: [type, null]` with `default: null` is what the form shows as `Property is type
    "None"`: an optional field is its plain type instead, and starts empty."""
    for model in form(flow)["definitions"].values():
        for prop in model.get("properties", {}).values():
            if "anyOf" in prop:
                assert prop.get("default") is not None, prop
                assert all(branch.get("title") for branch in prop["anyOf"]), prop


def test_the_deadline_says_its_time_zone() -> None:
    deadline = form()["definitions"]["PipelineOptions"]["properties"]["capacity_deadline"]
    assert "local time zone" in deadline["description"]
    assert deadline["type"] == "string" and "default" not in deadline


def test_the_gpu_limit_choice_is_named() -> None:
    limit = form()["definitions"]["PipelineOptions"]["properties"]["gpu_limit"]
    assert [branch["title"] for branch in limit["anyOf"]] == ["Limit", "No limit"]
    assert limit["default"] == "gpu"


def test_vllm_flags_are_three_way_choices() -> None:
    """An optional bool would render as an off switch although vLLM's default may be on
    (chunked prefill), and one switched on and off again would pass false: each vLLM flag
    is a choice of default (not passed to vLLM), on and off."""
    vllm = form()["definitions"]["VllmOptions"]["properties"]
    for name in ("enforce_eager", "enable_chunked_prefill"):
        assert (vllm[name]["type"], vllm[name]["enum"]) == ("string", ["default", "on", "off"])
        assert vllm[name]["default"] == "default"
    assert "vLLM's: on" in vllm["enable_chunked_prefill"]["description"]
    untouched = VllmOptions().engine_options()
    assert untouched.enable_chunked_prefill is None and not untouched.given
    chosen = VllmOptions(enforce_eager="on", enable_chunked_prefill="off").engine_options()
    assert (chosen.enforce_eager, chosen.enable_chunked_prefill) == (True, False)
    # what runs made before the choice passed: true, false, null
    older = VllmOptions.model_validate({"enforce_eager": True, "enable_chunked_prefill": None})
    assert (older.enforce_eager, older.enable_chunked_prefill) == ("on", "default")
    server_check({"engine": {"vllm": {"enable_chunked_prefill": "off"}}})
    with pytest.raises(ValidationError):
        server_check({"engine": {"vllm": {"enable_chunked_prefill": "maybe"}}})


def server_check(options: dict[str, Any]) -> None:
    """What Prefect's server does with a run's parameters when the deployment enforces its
    schema (enforce_parameter_schema in deployments/prefect.yaml)."""
    validate({"options": options}, form(), raise_on_error=True)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"input_path": None, "dataset": None, "capacity_deadline": None, "gpu_limit": None},
        {"planning": {"model_spec": None, "hardware": None}, "engine": {"max_num_seqs": None}},
        {"input_path": "/data/p.jsonl", "dataset": "nightly", "capacity_deadline": "06:00"},
    ],
)
def test_the_server_takes_empty_null_and_good_values(options: dict[str, Any]) -> None:
    server_check(options)
    PipelineOptions.model_validate(options)  # and the flow takes them too


@pytest.mark.parametrize(
    "options",
    [
        {"dataset": "../x"},
        {"capacity_deadline": "6am"},
        {"engine": {"max_num_seqs": 0}},
        {"engines": None},
    ],
)
def test_the_server_still_refuses_bad_values(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        server_check(options)


def test_the_deployments_parameters_fit_the_schema() -> None:
    """Creating a deployment checks its parameters with plain JSON-schema validation (no null
    for an optional field, unlike a run's): deployments/prefect.yaml leaves such fields out."""
    config = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    for deployment in config["deployments"]:
        assert deployment["entrypoint"] == "flows.pipeline:pipeline_flow"
        jsonschema.validate(deployment["parameters"], form())
        PipelineOptions.model_validate(deployment["parameters"]["options"])
    with pytest.raises(jsonschema.ValidationError, match="None is not of type 'string'"):
        jsonschema.validate({"options": {"dataset": None}}, form())


def test_the_flow_refuses_a_run_without_options() -> None:
    with pytest.raises(ParameterTypeError):
        pipeline_flow.validate_parameters({})


def test_a_form_order_must_name_every_field() -> None:
    with pytest.raises(TypeError, match=r"missing \['b'\], unknown \['c'\]"):

        class Broken(FormOptions):
            form_order: ClassVar[tuple[str, ...]] = ("a", "c")
            a: int = Field(0, title="A", description="a")
            b: int = Field(0, title="B", description="b")
