"""Flow parameters as pydantic models, so the Prefect UI renders them as forms."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from blend.engines.base import EngineConfig
from blend.store import Store


class StoreOptions(BaseModel):
    store: str | None = Field(
        None, description="Store folder (default: $BLEND_STORE or ./blend-store)"
    )

    def open_store(self) -> Store:
        return Store.open(self.store)


class ModelOptions(StoreOptions):
    model: str | None = Field(None, description="Model folder (default: the tiny demo model)")

    def model_dir(self, store: Store) -> Path:
        if self.model:
            return Path(self.model).resolve()
        from blend.demo.model import ensure_tiny_model

        return ensure_tiny_model(store.models_dir)


class EngineOptions(BaseModel):
    max_num_seqs: int = Field(256, ge=1, description="Running requests per engine step")
    max_num_batched_tokens: int | None = Field(None, ge=1, description="Tokens per engine step")
    kv_cache_gib: float = Field(1.0, gt=0, description="CPU build only: KV cache size (GiB)")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="GPU only")

    def engine_config(self, model_dir: Path) -> EngineConfig:
        return EngineConfig(model_dir=model_dir, **self.model_dump())
