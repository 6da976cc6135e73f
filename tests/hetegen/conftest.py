"""Fixtures for the HeteGen tests: a made-up profile and the demo model in float32."""

from __future__ import annotations

from pathlib import Path

import pytest

from blend.cost.offload.hardware_profile import HeteGenProfile


@pytest.fixture
def profile() -> HeteGenProfile:
    """CPU 1e9 weights/s (half that at batch 8), copies 2e9 B/s, GPU 1e11 weights/s."""
    return HeteGenProfile(
        name="made-up",
        cpu_weights_per_s={1: 1e9, 8: 5e8},
        h2d_bytes_s=2e9,
        gpu_weights_per_s={1: 1e11, 8: 1e11},
    )


@pytest.fixture
def float_model(tiny_model: Path):  # type: ignore[no-untyped-def]
    """The demo Llama model (2 layers), in float32 so splits compare tightly, eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    return model.eval()
