"""Flow parameters as pydantic models, so the Prefect UI renders them as forms.

Names (datasets, plan ids, run ids, model folders) follow blend.store.names' rule: the models refuse
anything else when they are built, so a value typed into the Prefect form is refused before
the flow runs, and the form itself gets the rule as a JSON-schema `pattern`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from blend.engines.base import EngineConfig, EngineName
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
    """A model folder path: anywhere, but its name (the results' `model`) follows the rule."""
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


class StoreOptions(BaseModel):
    store: str | None = Field(
        None, description="Store folder (default: $BLEND_STORE or ./blend-store)"
    )

    def open_store(self) -> Store:
        return Store.open(self.store)


class ModelOptions(StoreOptions):
    model: ModelFolder | None = Field(
        None, description="Model folder (default: the tiny demo model)"
    )

    def model_dir(self, store: Store) -> Path:
        if self.model:
            return Path(self.model).resolve()
        from blend.demo.model import ensure_tiny_model

        return ensure_tiny_model(store.models_dir)


class EngineOptions(BaseModel):
    max_num_seqs: int | None = Field(
        None, ge=1, description="Running requests per engine step (default: the plan's)"
    )
    max_num_batched_tokens: int | None = Field(
        None, ge=1, description="Tokens per engine step (default: the plan's)"
    )
    kv_cache_gib: float = Field(1.0, gt=0, description="CPU build only: KV cache size (GiB)")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="GPU only")
    engine: Literal["auto", "vllm", "hetegen"] = Field(
        "auto",
        description="vllm, hetegen (CPU+GPU split layers) or auto: hetegen when the model does "
        "not fit the GPU",
    )

    def engine_config(self, model_dir: Path) -> EngineConfig:
        fields = self.model_dump()
        return EngineConfig(model_dir=model_dir, **fields | {"engine": EngineName(self.engine)})


class ScaleOutOptions(BaseModel):
    """How many engines run one plan (blend/scale: Ray actors), and where they write."""

    engines: int = Field(
        1,
        ge=1,
        description="Engines that run the plan in parallel as Ray actors (one GPU and one "
        "gpu_limit slot each; Ray: $RAY_ADDRESS, else a local cluster)",
    )
    results_uri: str | None = Field(
        None,
        description="With engines > 1: the store's results folder as the engines reach it "
        "(e.g. s3://bucket/blend-results); default: its path, shared by every node",
    )


class PlanningOptions(BaseModel):
    """How to plan: the planner, the cost model it plans for, the warm-up and the search."""

    planner: PlannerName = Field(PlannerName.DFS, description="How to order the requests")
    model_spec: str | None = Field(
        None,
        description="Cost model (llama-3.1-8b, llama-3.1-70b, qwen2.5-7b, or a JSON file); "
        "default: the model folder's config.json",
    )
    hardware: str | None = Field(
        None,
        description="Hardware the plan is for (a100-80g, h100-80g, h200, cpu-local, or a JSON "
        "file); default: the worker machine's",
    )
    seed: int = 0
    warmup_fraction: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Share of the requests without a measured length run first to measure "
        "output lengths (0: no warm-up)",
    )
    search_settings: bool = Field(
        True,
        description="After the warm-up, choose the engine's budgets by simulating the plan",
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
