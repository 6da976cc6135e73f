"""A toy model and hardware with round numbers, so expected times can be worked out by hand."""

from __future__ import annotations

import pytest

from blend.cost import CostModel, HardwareSpec, ModelSpec

# 1 parameter and 1 weight byte; KV: 2 bytes per token (K and V, 1 layer, width 1, 1 byte).
TOY_MODEL = ModelSpec(
    name="toy",
    n_params=1.0,
    n_layers=1,
    hidden_size=1,
    n_heads=1,
    n_kv_heads=1,
    head_dim=1,
    intermediate_size=1,
    vocab_size=16,
    dtype_bytes=1,
)


def toy_cost(
    flops: float = 2.0,
    bandwidth: float = 1.0,
    overhead: float = 0.0,
    overlap: bool = True,
    attention_after_gemm: bool = False,
    roofline_sharpness: float = 0.0,
) -> CostModel:
    hardware = HardwareSpec(
        name="toy-hw",
        peak_flops=flops,
        mem_bandwidth_bytes_s=bandwidth,
        mem_bytes=1e9,
        step_overhead_s=overhead,
        overlap_compute_memory=overlap,
        attention_after_gemm=attention_after_gemm,
        roofline_sharpness=roofline_sharpness,
        attention_flops_efficiency=0.5 if attention_after_gemm else 0.0,
    )
    return CostModel(TOY_MODEL, hardware)


@pytest.fixture
def memory_bound_cost() -> CostModel:
    """Compute is free (1e15 FLOP/s); each step costs 1 s of weights + 2 s per KV token."""
    return toy_cost(flops=1e15, bandwidth=1.0)
