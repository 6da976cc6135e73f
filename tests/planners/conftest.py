"""A toy cost model with round numbers: Comp(p, d) = p + d seconds, Mem(p, d) = p d + d^2 / 2."""

from __future__ import annotations

import pytest

from blend.cost import CostModel, HardwareSpec, ModelSpec


def toy_cost(mem_bytes: float = 1e6) -> CostModel:
    model = ModelSpec(
        name="toy",
        n_params=0.5,
        n_layers=1,
        hidden_size=1,
        n_heads=1,
        n_kv_heads=1,
        head_dim=1,
        intermediate_size=1,
        vocab_size=16,
        dtype_bytes=1,
    )  # kv_bytes_per_token = 2, weights 0.5 bytes
    hardware = HardwareSpec(
        name="toy-hw",
        peak_flops=1.0,
        mem_bandwidth_bytes_s=2.0,
        mem_bytes=mem_bytes,
        kv_memory_fraction=1.0,
    )
    return CostModel(model, hardware)


@pytest.fixture
def cost() -> CostModel:
    return toy_cost()
