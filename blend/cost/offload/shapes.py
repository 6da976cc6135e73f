"""The linear layers of a Llama-architecture decoder, derived from its model spec."""

from __future__ import annotations

from dataclasses import dataclass

from blend.cost.model import ModelSpec

# Projections of one decoder layer, in the order a forward pass runs them.
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
LM_HEAD = "lm_head"


@dataclass(frozen=True, slots=True)
class LinearShape:
    """One linear layer: y = x W^T with W of shape [out_features, in_features]."""

    name: str  # "layers.{i}.{projection}" or "lm_head" (transformers' module names)
    in_features: int
    out_features: int
    dtype_bytes: int = 2  # bytes per weight

    @property
    def n_weights(self) -> int:
        return self.in_features * self.out_features

    @property
    def weight_bytes(self) -> int:
        return self.n_weights * self.dtype_bytes


def layer_name(layer: int, projection: str) -> str:
    return f"layers.{layer}.{projection}"


def linear_shapes(spec: ModelSpec) -> list[LinearShape]:
    """q, k, v, o, gate, up, down of every decoder layer (GQA attention, SwiGLU MLP), then
    lm_head; biases are left out (Llama has none)."""
    h, inter = spec.hidden_size, spec.intermediate_size
    q_out, kv_out = spec.n_heads * spec.head_dim, spec.n_kv_heads * spec.head_dim
    per_layer = {
        "q_proj": (h, q_out),
        "k_proj": (h, kv_out),
        "v_proj": (h, kv_out),
        "o_proj": (q_out, h),
        "gate_proj": (h, inter),
        "up_proj": (h, inter),
        "down_proj": (inter, h),
    }
    shapes = [
        LinearShape(layer_name(i, name), n_in, n_out, spec.dtype_bytes)
        for i in range(spec.n_layers)
        for name, (n_in, n_out) in per_layer.items()
    ]
    shapes.append(LinearShape(LM_HEAD, h, spec.vocab_size, spec.dtype_bytes))
    return shapes


def non_linear_weight_bytes(spec: ModelSpec) -> int:
    """Weights outside the linear layers (embeddings, norms), which stay on the GPU (bytes)."""
    linear = sum(s.n_weights for s in linear_shapes(spec))
    return max(0, int(spec.n_params) - linear) * spec.dtype_bytes
