"""Flow parameters as pydantic models, so the Prefect UI renders them as forms.

Each model is a `FormOptions`: its JSON schema is made for Prefect's form (fields in the order
a user reads them, a title and a one-line description each, optional fields shown as a plain
input). A new group of fields is one more `FormOptions` model, nested as a field where it
belongs: it shows as a card at that field's place.

Names (datasets, plan ids, run ids, model folders) follow blend.store.names' rule: the models refuse
anything else when they are built, so a value typed into the Prefect form is refused before
the flow runs, and the form itself gets the rule as a JSON-schema `pattern`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, cast

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import JsonDict

from blend.engines.base import EngineConfig, EngineName
from blend.engines.model_source import locate_model, parse_hub_id
from blend.engines.vllm_options import (
    VllmEngineOptions,
    parse_engine_args,
    validated_engine_kwargs,
    vllm_is_cpu_build,
    with_engine_kwargs,
)
from blend.plan.stage import PlanOptions
from blend.planners import PlannerName
from blend.store.database import Store
from blend.store.names import NAME_PATTERN, NameKind, validate_name


def _schema(kind: NameKind) -> dict[str, Any]:
    """The naming rule as JSON schema, so the Prefect form checks it while typing."""
    return {"pattern": NAME_PATTERN, "maxLength": kind.max_length}


def _rule(kind: NameKind) -> Callable[[str], str]:
    return partial(validate_name, kind=kind, where="flow parameter")


def _model_folder(value: str) -> str:
    """A model folder path: anywhere, but its name (the results' `model`) follows the rule;
    or a Hugging Face model id, org/name[@revision] (looked up when the flow runs)."""
    if parse_hub_id(value) is None:
        validate_name(Path(value).resolve().name, NameKind.MODEL, f"model folder {value!r}")
    return value


DatasetName = Annotated[
    str, Field(json_schema_extra=_schema(NameKind.DATASET)), AfterValidator(_rule(NameKind.DATASET))
]
PlanId = Annotated[
    str, Field(json_schema_extra=_schema(NameKind.PLAN_ID)), AfterValidator(_rule(NameKind.PLAN_ID))
]
RunId = Annotated[
    str, Field(json_schema_extra=_schema(NameKind.RUN_ID)), AfterValidator(_rule(NameKind.RUN_ID))
]
ModelFolder = Annotated[str, AfterValidator(_model_folder)]


def _switch(value: object) -> object:
    """A flag as parameters made before the three-way switch gave it (true, false, null)."""
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


# A vLLM flag in the form: an optional bool would show as an off switch while vLLM's default
# may be on, and a switch flipped on and off again would send false. "default": not passed.
Switch = Annotated[Literal["default", "on", "off"], BeforeValidator(_switch)]


def _flag(value: str) -> bool | None:
    """A Switch as the engine argument: None (not passed, vLLM's default), True or False."""
    return None if value == "default" else value == "on"


def _form_schema(schema: JsonDict, cls: type[Any]) -> None:
    """A model's JSON schema as Prefect's form wants it (pydantic's `json_schema_extra`).

    Each field gets a `position`, its place in `form_order`: the form sorts by it (not every
    server database keeps the keys' order). A field that may be None and is None by default
    (`str | None = None`) is shown as its plain type: pydantic's `anyOf: [type, null]` with
    `default: null` makes the form open a choice of the two on None, which reads `Property
    is type "None"`. Without the default in the schema the input starts empty and is left
    out of the run's parameters when empty (pydantic fills in None); Prefect's server still
    takes an explicit null for it in a run's parameters (a field neither required nor
    defaulted), though not in a deployment's own (checked strictly when it is created).
    """
    properties = cast(dict[str, JsonDict], schema.get("properties", {}))
    for prop in properties.values():
        _plain_when_none_by_default(prop)
    order = cls.form_order or tuple(properties)
    schema["properties"] = {
        name: {**properties[name], "position": i} for i, name in enumerate(order)
    }


def _plain_when_none_by_default(prop: JsonDict) -> None:
    branches = prop.get("anyOf")
    null: JsonDict = {"type": "null"}
    if "default" not in prop or prop["default"] is not None or not isinstance(branches, list):
        return
    if len(branches) != 2 or null not in branches:
        return
    [kept] = [branch for branch in branches if branch != null]
    del prop["anyOf"], prop["default"]
    prop.update(cast(JsonDict, kept))


def choice_titles(*titles: str) -> Callable[[JsonDict], None]:
    """`json_schema_extra` of a field that takes one of several types (`str | None` with a
    default that is not None): the form's buttons that choose among them read `titles`, in
    the order of the types, instead of `str` and `None`."""

    def name_branches(prop: JsonDict) -> None:
        branches = cast(list[JsonDict], prop["anyOf"])
        for branch, title in zip(branches, titles, strict=True):
            branch["title"] = title

    return name_branches


class FormOptions(BaseModel):
    """Options that Prefect shows as a form ("Run > Custom run"), built from this JSON schema.

    `form_order`: the field names in the form's order, when declaring them in that order is
    not possible (fields inherited from mixins come first); empty: as declared.
    """

    model_config = ConfigDict(json_schema_extra=_form_schema)
    form_order: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.form_order and sorted(cls.form_order) != sorted(cls.model_fields):
            missing = sorted(set(cls.model_fields) - set(cls.form_order))
            unknown = sorted(set(cls.form_order) - set(cls.model_fields))
            raise TypeError(
                f"{cls.__name__}.form_order must name every field once: missing {missing}, "
                f"unknown {unknown}"
            )


class StoreOptions(FormOptions):
    store: str | None = Field(
        None,
        title="Store folder",
        description="Where the DuckDB store and the Parquet results live, on the worker "
        "(default: $BLEND_STORE, else ./blend-store)",
    )

    def open_store(self) -> Store:
        return Store.open(self.store)


class ModelOptions(StoreOptions):
    model: ModelFolder | None = Field(
        None,
        title="Model",
        description="Model folder, or Hugging Face model id (org/name, org/name@revision) "
        "from the worker's Hugging Face cache (default: the tiny demo model)",
    )

    def model_dir(self, store: Store) -> Path:
        """The model's folder (ModelNotFoundError, before any stage runs, when not there)."""
        if self.model:
            return locate_model(self.model).path
        from blend.demo.model import ensure_tiny_model

        return ensure_tiny_model(store.models_dir)


class VllmOptions(FormOptions):
    """vLLM's engine arguments, by vLLM's own names (blend/engines/vllm_options.py): checked by
    the worker's vLLM before any stage runs; empty fields keep vLLM's defaults."""

    tensor_parallel_size: int | None = Field(
        None,
        ge=1,
        title="Tensor parallel size",
        description="GPUs one engine splits the weights and the KV cache over (default 1); "
        "plans and capacity predictions price it",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] | None = Field(
        None, title="dtype", description="Weights and activations (default: auto)"
    )
    max_model_len: int | None = Field(
        None,
        ge=1,
        title="Max model length",
        description="Tokens of prompt and output together (default: the model's); longer "
        "prompts become error rows, not priced as work",
    )
    quantization: str | None = Field(
        None,
        title="Quantization",
        description="Weight quantization method, e.g. awq, gptq, fp8 (default: the model's)",
    )
    enforce_eager: Switch = Field(
        "default",
        title="Enforce eager",
        description="Run without CUDA graphs: on, off, or default (vLLM's: off)",
    )
    enable_chunked_prefill: Switch = Field(
        "default",
        title="Chunked prefill",
        description="Split long prompts over steps, GPUs only: on, off, or default (vLLM's: on)",
    )
    engine_args: dict[str, str] = Field(
        default_factory=dict,
        title="Other engine arguments",
        description="Any other vLLM engine argument by its name, its value as on vLLM's "
        "command line, e.g. kv_cache_dtype: fp8",
    )

    def engine_options(self) -> VllmEngineOptions:
        return VllmEngineOptions(
            tensor_parallel_size=self.tensor_parallel_size,
            dtype=self.dtype,
            max_model_len=self.max_model_len,
            quantization=self.quantization,
            enforce_eager=_flag(self.enforce_eager),
            enable_chunked_prefill=_flag(self.enable_chunked_prefill),
            extra=parse_engine_args([f"{k}={v}" for k, v in self.engine_args.items()]),
        )


class EngineOptions(FormOptions):
    """Which engine runs the plan, its budgets per step and its memory."""

    engine: Literal["auto", "vllm", "hetegen"] = Field(
        "auto",
        title="Engine",
        description="vllm, hetegen (layers split between CPU and GPU) or auto: vllm, or "
        "hetegen when the model does not fit the GPU",
    )
    max_num_seqs: int | None = Field(
        None,
        ge=1,
        title="Requests per step",
        description="Most requests running in one engine step, vLLM's max_num_seqs "
        "(default: the plan's)",
    )
    max_num_batched_tokens: int | None = Field(
        None,
        ge=1,
        title="Tokens per step",
        description="Most tokens in one engine step, vLLM's max_num_batched_tokens "
        "(default: the plan's)",
    )
    kv_cache_gib: float = Field(
        1.0, gt=0, title="KV cache (GiB)", description="CPU build only: the KV cache's size in GiB"
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        le=1,
        title="GPU memory share",
        description="GPU only: the share of each GPU's memory (0 to 1) vLLM may take for "
        "weights and KV cache, as plans price it; vLLM's CPU build ignores it (KV cache GiB "
        "there)",
    )
    vllm: VllmOptions = Field(default_factory=VllmOptions, title="vLLM engine arguments")

    def engine_config(self, model_dir: Path) -> EngineConfig:
        """The engine's config; vLLM engine arguments, when given, are checked by the
        installed vLLM here (EngineOptionsError naming the argument), before any stage."""
        fields = self.model_dump(exclude={"vllm"})
        config = EngineConfig(model_dir=model_dir, **fields | {"engine": EngineName(self.engine)})
        options = self.vllm.engine_options()
        if not options.given:
            return config
        kwargs = validated_engine_kwargs(options, on_cpu=vllm_is_cpu_build())
        return with_engine_kwargs(config, kwargs)


class ScaleOutOptions(FormOptions):
    """How many engines run one plan (blend/scale: Ray actors), and where they write."""

    engines: int = Field(
        1,
        ge=1,
        title="Engines",
        description="Engines that run the plan in parallel as Ray actors, one GPU and one "
        "gpu_limit slot each (Ray: $RAY_ADDRESS, else a local cluster)",
    )
    results_uri: str | None = Field(
        None,
        title="Results URI",
        description="With engines > 1: the store's results folder as every engine reaches it, "
        "e.g. s3://bucket/blend-results (default: its path, on a filesystem all nodes share)",
    )


class PlanningOptions(FormOptions):
    """How to plan: the planner, the cost model it plans for, the warm-up and the search."""

    planner: PlannerName = Field(
        PlannerName.DFS,
        title="Planner",
        description="How to order the requests (docs/planners.md)",
    )
    model_spec: str | None = Field(
        None,
        title="Cost model",
        description="llama-3.1-8b, llama-3.1-70b, qwen2.5-7b or a JSON file "
        "(default: from the model folder's config.json)",
    )
    hardware: str | None = Field(
        None,
        title="Hardware",
        description="What the plan is for: a100-80g, a10-24g, h100-80g, h200, cpu-local or a "
        "JSON file (default: the worker machine's)",
    )
    warmup_fraction: float = Field(
        0.01,
        ge=0,
        le=1,
        title="Warm-up share",
        description="Share (0 to 1) of the requests without a measured length that run first, "
        "to measure output lengths; 0: no warm-up",
    )
    search_settings: bool = Field(
        True,
        title="Search engine settings",
        description="After the warm-up, choose the budgets per step by simulating the plan",
    )
    seed: int = Field(
        0, title="Seed", description="Seed of the warm-up sample and of the random planner"
    )

    def plan_options(self) -> PlanOptions:
        return PlanOptions(
            planner=self.planner,
            seed=self.seed,
            model_spec=self.model_spec,
            hardware=self.hardware,
            warmup_fraction=self.warmup_fraction,
            search_settings=self.search_settings,
        )
