"""Split layers compute what the unsplit ones do (both parts on the CPU here, no CUDA)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from blend.cost.offload.hardware_profile import HeteGenProfile
from blend.cost.offload.placement import place
from blend.hetegen.apply import apply_placement, model_linear_shapes
from blend.hetegen.split_linear import SplitLinear


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("bias", [False, True])
def test_a_split_layer_equals_the_unsplit_one(alpha: float, bias: bool) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(24, 37, bias=bias)
    split = SplitLinear.from_linear(linear, alpha, "cpu")
    x = torch.randn(2, 5, 24)
    assert split.cpu_columns == round(alpha * 37)
    with torch.no_grad():
        torch.testing.assert_close(split(x), linear(x), rtol=1e-5, atol=1e-6)


def test_the_cpu_part_may_compute_in_another_dtype() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(16, 8)
    split = SplitLinear.from_linear(linear, 0.5, "cpu", cpu_dtype=torch.float64)
    x = torch.randn(3, 16)
    with torch.no_grad():
        y = split(x)
        assert y.dtype == torch.float32
        torch.testing.assert_close(y, linear(x), rtol=1e-5, atol=1e-6)


def test_bad_alpha_and_inputs_are_refused() -> None:
    linear = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="outside"):
        SplitLinear.from_linear(linear, 1.5, "cpu")
    with pytest.raises(ValueError, match="expected 4"):
        SplitLinear.from_linear(linear, 0.5, "cpu")(torch.zeros(1, 5))


def _placed_model(
    model: Any, profile: HeteGenProfile, resident_share: float, alpha: float | None
) -> Any:
    shapes = model_linear_shapes(model)
    budget = int(resident_share * sum(s.weight_bytes for s in shapes))
    placement = place(shapes, budget, profile, batch=1, fixed_alpha=alpha)
    return apply_placement(model, placement, "cpu"), placement


@pytest.mark.parametrize(
    ("resident_share", "alpha"), [(0.0, 0.0), (0.0, 0.3), (0.0, 1.0), (0.5, 0.5), (0.5, None)]
)
def test_a_placed_model_gives_the_same_logits(
    float_model: Any, profile: HeteGenProfile, resident_share: float, alpha: float | None
) -> None:
    ids = torch.tensor([[5, 17, 99, 3, 250, 7]])
    with torch.no_grad():
        expected = float_model(ids).logits
    model, placement = _placed_model(float_model, profile, resident_share, alpha)
    split = [m for m in model.modules() if isinstance(m, SplitLinear)]
    offloaded = [layer for layer in placement.layers if not layer.resident]
    assert len(split) == len(offloaded) > 0
    assert (len(offloaded) < len(placement.layers)) == (resident_share > 0)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, expected, rtol=1e-4, atol=1e-4)


def test_greedy_generation_gives_the_same_tokens(float_model: Any, profile: HeteGenProfile) -> None:
    ids = torch.tensor([[5, 17, 99, 3]])
    settings = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        expected = float_model.generate(ids, **settings)
        model, _ = _placed_model(float_model, profile, 0.3, None)
        assert torch.equal(model.generate(ids, **settings), expected)


def test_a_placement_of_another_model_is_refused(float_model: Any, profile: HeteGenProfile) -> None:
    shapes = model_linear_shapes(float_model)[:-1]  # no lm_head
    with pytest.raises(ValueError, match=r"missing \['lm_head'\]"):
        apply_placement(float_model, place(shapes, 0, profile, batch=1), "cpu")
