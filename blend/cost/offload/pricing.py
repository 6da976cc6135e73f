"""The simulator's and planners' cost of a model larger than the GPU: a CostModel whose
OffloadTerm (blend/cost/model.py) holds HeteGen's step time of the layers left off the GPU.

The resident layers are the ones layer_costs.py's placement keeps at a reference batch
(budget: the GPU's memory less the KV cache of that batch at a reference context, the
non-linear weights and the reserve, as in `cost.weight_budget_bytes`); they stay fixed. At
every step size of a grid (1 .. 8192 tokens) each other layer is costed at its alpha* for
that batch, and the simulator interpolates between the grid's points. KV capacity is then
the GPU memory left after the resident weights (CostModel.kv_capacity_tokens).
"""

from __future__ import annotations

from dataclasses import replace

from blend.cost.model import CostModel, HardwareSpec, ModelSpec, OffloadTerm
from blend.cost.offload.hardware_profile import (
    HeteGenProfile,
    roofline_weights_per_s,
    with_assumed_gpu,
)
from blend.cost.offload.layer_costs import (
    A10_H2D_BYTES_S,
    ASSUMED_CPU_BANDWIDTH_BYTES_S,
    ASSUMED_CPU_FLOPS,
    TARGET_BATCHES,
    TARGET_CONTEXT_TOKENS,
    weight_budget_bytes,
)
from blend.cost.offload.placement import Placement, offloaded_layer, place, resident_layer
from blend.cost.offload.shapes import LinearShape, linear_shapes

OFFLOAD_MODES = ("auto", "hetegen", "none")
STEP_TOKENS = tuple(2**i for i in range(14))  # step sizes the term is placed at: 1 .. 8192
REFERENCE_BATCH = 16  # decode batch whose KV cache the resident set leaves room for
REFERENCE_CONTEXT_TOKENS = TARGET_CONTEXT_TOKENS  # tokens of context each of them holds


def assumed_host_profile(hardware: HardwareSpec) -> HeteGenProfile:
    """The stated host of layer_costs.py (server CPU at 1 TFLOP/s and 40 GB/s, PCIe 4 x16 at
    25 GB/s) beside `hardware`'s GPU roofline."""
    cpu = HeteGenProfile(
        name=f"{hardware.name}-host-assumed",
        cpu_weights_per_s=roofline_weights_per_s(
            ASSUMED_CPU_FLOPS, ASSUMED_CPU_BANDWIDTH_BYTES_S, 2, list(TARGET_BATCHES)
        ),
        source="assumed CPU (blend/cost/offload/layer_costs.py)",
    )
    return with_assumed_gpu(cpu, hardware, A10_H2D_BYTES_S)


def resident_placement(
    spec: ModelSpec,
    hardware: HardwareSpec,
    profile: HeteGenProfile,
    reference_batch: int = REFERENCE_BATCH,
    context_tokens: int = REFERENCE_CONTEXT_TOKENS,
) -> Placement:
    """layer_costs.py's HeteGen placement at the reference batch (which layers stay resident)."""
    budget = weight_budget_bytes(spec, hardware.mem_bytes, reference_batch, context_tokens)
    if budget < 0:
        raise ValueError(
            f"{spec.name} on {hardware.name}: the KV cache of {reference_batch} x "
            f"{context_tokens} tokens, the non-linear weights and the reserve alone overflow "
            "the GPU"
        )
    return place(linear_shapes(spec), budget, profile, reference_batch)


def placement_at(
    shapes: list[LinearShape], resident: set[str], profile: HeteGenProfile, batch: int
) -> Placement:
    """The fixed resident set at another batch: the other layers at that batch's alpha*."""
    layers = [
        resident_layer(s, profile, batch)
        if s.name in resident
        else offloaded_layer(s, profile, batch)
        for s in shapes
    ]
    budget = sum(s.weight_bytes for s in shapes if s.name in resident)
    return Placement(batch=batch, gpu_budget_bytes=budget, layers=layers)


def offload_term(
    spec: ModelSpec,
    hardware: HardwareSpec,
    profile: HeteGenProfile,
    reference_batch: int = REFERENCE_BATCH,
    context_tokens: int = REFERENCE_CONTEXT_TOKENS,
    step_tokens: tuple[int, ...] = STEP_TOKENS,
) -> OffloadTerm:
    """The offloaded layers' seconds per step at every step size of `step_tokens`."""
    shapes = linear_shapes(spec)
    reference = resident_placement(spec, hardware, profile, reference_batch, context_tokens)
    resident = {layer.name for layer in reference.layers if layer.resident}
    seconds = []
    for tokens in step_tokens:
        placement = placement_at(shapes, resident, profile, tokens)
        seconds.append(sum(layer.time_s for layer in placement.layers if not layer.resident))
    offloaded_params = sum(s.n_weights for s in shapes if s.name not in resident)
    return OffloadTerm(
        resident_params=spec.n_params - offloaded_params,
        tokens=tuple(float(t) for t in step_tokens),
        offloaded_s=tuple(seconds),
        source=(
            f"hetegen: {len(shapes) - len(resident)} of {len(shapes)} linear layers offloaded "
            f"({offloaded_params * spec.dtype_bytes / 2**30:.1f} GiB), resident set placed at "
            f"batch {reference_batch} x {context_tokens} tokens; profile {profile.name}"
        ),
    )


def needs_offload(
    spec: ModelSpec,
    hardware: HardwareSpec,
    reference_batch: int = REFERENCE_BATCH,
    context_tokens: int = REFERENCE_CONTEXT_TOKENS,
) -> bool:
    """True when the linear weights do not all fit beside the reference KV cache."""
    budget = weight_budget_bytes(spec, hardware.mem_bytes, reference_batch, context_tokens)
    return budget < sum(s.weight_bytes for s in linear_shapes(spec))


def with_offload(
    cost: CostModel, mode: str = "auto", profile: HeteGenProfile | None = None
) -> CostModel:
    """`cost` with a HeteGen offload term: always (`hetegen`), never (`none`), or when the
    weights do not fit a GPU (`auto`; CPU hardware never offloads)."""
    if mode not in OFFLOAD_MODES:
        raise ValueError(f"offload {mode!r}: expected one of {', '.join(OFFLOAD_MODES)}")
    if mode == "none" or cost.offload is not None:
        return cost
    if mode == "auto" and (
        cost.hardware.device == "cpu" or not needs_offload(cost.model, cost.hardware)
    ):
        return cost
    profile = profile or assumed_host_profile(cost.hardware)
    return replace(cost, offload=offload_term(cost.model, cost.hardware, profile))
