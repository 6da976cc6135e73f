"""The cost model a run uses: a spec by name or file (else the model folder's), on the named
hardware (else this machine's), priced with offloading when the weights do not fit."""

from __future__ import annotations

from pathlib import Path

from blend.cost.model import (
    CostModel,
    load_hardware,
    load_model_spec,
    local_hardware_name,
    model_spec_from_dir,
    with_memory_utilization,
)
from blend.cost.offload.pricing import with_offload
from blend.cost.parallel import tensor_parallel


def resolve_cost(
    model_spec: str | None,
    hardware: str | None,
    model_dir: Path | None = None,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float | None = None,
) -> CostModel:
    """The cost model of a spec name or JSON file (else the model folder's config.json) on a
    hardware name or JSON file (else this machine's), for one engine spanning
    `tensor_parallel_size` of its GPUs (blend/cost/parallel.py) that vLLM gives
    `gpu_memory_utilization` of each GPU's memory (None: the spec's default, 0.9; ignored on
    CPU hardware: CostModel.kv_cache_bytes)."""
    if model_spec is not None:
        spec = load_model_spec(model_spec)
    elif model_dir is not None:
        spec = model_spec_from_dir(model_dir)
    else:
        raise ValueError("name a model spec (--model-spec) or a model folder (--model)")
    machine = load_hardware(hardware or local_hardware_name())
    cost = CostModel(spec, with_memory_utilization(machine, gpu_memory_utilization))
    if tensor_parallel_size > 1:  # vLLM across GPUs: hetegen (offloading) runs on one
        return tensor_parallel(cost, tensor_parallel_size)
    # a model larger than the GPU is costed as the hetegen engine runs it
    return with_offload(cost)
