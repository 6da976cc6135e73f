"""Toy cost models with round numbers, so expected times can be worked out by hand."""

from __future__ import annotations

from blend.cost.model import CostModel, HardwareSpec, ModelSpec


def toy_model(n_params: float = 1.0) -> ModelSpec:
    """`n_params` parameters, 1 byte each; KV: 2 bytes per token (K and V, 1 layer, width 1)."""
    return ModelSpec(
        name="toy",
        n_params=n_params,
        n_layers=1,
        hidden_size=1,
        n_heads=1,
        n_kv_heads=1,
        head_dim=1,
        intermediate_size=1,
        vocab_size=16,
        dtype_bytes=1,
    )


TOY_MODEL = toy_model()


def toy_cost(
    flops: float = 2.0,
    bandwidth: float = 1.0,
    overhead: float = 0.0,
    overlap: bool = True,
    attention_after_gemm: bool = False,
    roofline_sharpness: float = 0.0,
) -> CostModel:
    """The simulator's toy: by default 1 s of compute per token, 1 s to read the weights and
    2 s per KV token read (FLOP/s, bytes/s, seconds per step)."""
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


def planner_toy_cost(mem_bytes: float = 1e6) -> CostModel:
    """The planners' toy: Comp(p, d) = p + d seconds, Mem(p, d) = p d + d^2 / 2 (KV 2 bytes
    per token, weights 0.5 bytes, all of `mem_bytes` for KV)."""
    hardware = HardwareSpec(
        name="toy-hw",
        peak_flops=1.0,
        mem_bandwidth_bytes_s=2.0,
        mem_bytes=mem_bytes,
        memory_utilization=1.0,
    )
    return CostModel(toy_model(n_params=0.5), hardware)
