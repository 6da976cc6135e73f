"""Put split linear layers into a transformers Llama-architecture causal LM by placement."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from blend.cost.offload.placement import Placement
from blend.cost.offload.shapes import (
    ATTENTION_PROJECTIONS,
    LM_HEAD,
    MLP_PROJECTIONS,
    LinearShape,
    layer_name,
)
from blend.hetegen.split_linear import SplitLinear


def _decoder_layers(model: nn.Module) -> Any:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise ValueError(
            f"{type(model).__name__}: no model.layers (expected a Llama-architecture causal LM)"
        )
    return layers


def _linear_slots(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Placement name -> (parent module, attribute) of every linear layer HeteGen places."""
    slots: dict[str, tuple[nn.Module, str]] = {}
    for i, layer in enumerate(_decoder_layers(model)):
        for projection in ATTENTION_PROJECTIONS:
            slots[layer_name(i, projection)] = (layer.self_attn, projection)
        for projection in MLP_PROJECTIONS:
            slots[layer_name(i, projection)] = (layer.mlp, projection)
    slots[LM_HEAD] = (model, LM_HEAD)
    return slots


def model_linear_shapes(model: nn.Module) -> list[LinearShape]:
    """The shapes of a loaded model's linear layers, in model order, as placement takes them."""
    shapes = []
    for name, (parent, attribute) in _linear_slots(model).items():
        linear = getattr(parent, attribute)
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"{name}: {type(linear).__name__}, expected nn.Linear")
        shapes.append(
            LinearShape(name, linear.in_features, linear.out_features, linear.weight.element_size())
        )
    return shapes


def apply_placement(
    model: nn.Module,
    placement: Placement,
    device: torch.device | str,
    cpu_dtype: torch.dtype | None = None,
) -> nn.Module:
    """Replace every offloaded linear layer by a SplitLinear at its alpha, then move the rest
    (resident linear layers, embeddings, norms) to `device`. Changes `model` in place and
    returns it."""
    device = torch.device(device)
    slots = _linear_slots(model)
    rows = placement.by_name()
    missing, extra = sorted(set(slots) - set(rows)), sorted(set(rows) - set(slots))
    if missing or extra:
        raise ValueError(
            f"placement does not match the model: missing {missing[:5]}, unknown {extra[:5]}"
        )
    for name, (parent, attribute) in slots.items():
        linear = getattr(parent, attribute)
        row = rows[name]
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"{name}: {type(linear).__name__} (already applied?)")
        if (linear.in_features, linear.out_features) != (row.in_features, row.out_features):
            raise ValueError(
                f"{name}: model has [{linear.out_features}, {linear.in_features}], placement "
                f"[{row.out_features}, {row.in_features}]"
            )
        if not row.resident:
            setattr(
                parent, attribute, SplitLinear.from_linear(linear, row.alpha, device, cpu_dtype)
            )
    return model.to(device)
