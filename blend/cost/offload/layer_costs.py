"""Step time of a model larger than the GPU: HeteGen's split against full weight streaming
(FlexGen-style: every offloaded layer's weights copied each step) and everything resident.

One decode step of `batch` sequences at `context_tokens` of context:
    linear layers  the placement's per-layer max(CPU part, copy + GPU part), resident layers'
                   GPU GEMM time, one layer after another;
    attention      the KV cache read once at the GPU's batch-1 GEMM rate (a memory-bound
                   read like a weight's); its FLOPs, norms and sampling are left out.
The GPU holds the non-linear weights (embeddings, norms), the KV cache of the whole batch at
the full context and a fixed reserve (CUDA context, activations); resident linear weights
get the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from blend.cost.model import HardwareSpec, ModelSpec, load_hardware, load_model_spec
from blend.cost.offload.hardware_profile import (
    HeteGenProfile,
    roofline_weights_per_s,
    with_assumed_gpu,
)
from blend.cost.offload.placement import Placement, all_resident, place
from blend.cost.offload.shapes import linear_shapes, non_linear_weight_bytes

DEFAULT_RESERVE_BYTES = 3 * 2**29  # 1.5 GiB: CUDA context, activations, GEMM workspace
STRATEGIES = ("hetegen", "streaming", "resident")


@dataclass(frozen=True, slots=True)
class StepCost:
    """Predicted time of one decode step under one strategy."""

    strategy: str  # "hetegen", "streaming" or "resident"
    batch: int
    linear_s: float  # all linear layers (s)
    attention_s: float  # KV cache read (s)
    resident_bytes: int  # linear weights kept on the GPU
    mean_alpha: float  # weight-weighted CPU share of the offloaded layers (0: none)
    fits: bool  # the strategy's GPU memory (weights it keeps + KV + reserve) fits the GPU

    @property
    def step_s(self) -> float:
        return self.linear_s + self.attention_s

    @property
    def tokens_per_s(self) -> float:
        """Decode throughput: one token per sequence per step."""
        return self.batch / self.step_s


def weight_budget_bytes(
    spec: ModelSpec,
    gpu_mem_bytes: float,
    batch: int,
    context_tokens: int,
    reserve_bytes: int = DEFAULT_RESERVE_BYTES,
) -> int:
    """GPU memory left for resident linear weights (bytes; negative: even the KV cache and
    the non-linear weights do not fit)."""
    kv = batch * context_tokens * spec.kv_bytes_per_token
    return int(gpu_mem_bytes - reserve_bytes - kv - non_linear_weight_bytes(spec))


def step_costs(
    spec: ModelSpec,
    profile: HeteGenProfile,
    gpu_mem_bytes: float,
    batch: int,
    context_tokens: int,
    reserve_bytes: int = DEFAULT_RESERVE_BYTES,
) -> dict[str, StepCost]:
    """The three strategies' step costs; where the weight budget is negative (the KV cache
    alone overflows the GPU) HeteGen and streaming are costed with nothing resident and
    marked as not fitting."""
    shapes = linear_shapes(spec)
    budget = weight_budget_bytes(spec, gpu_mem_bytes, batch, context_tokens, reserve_bytes)
    kv_elements = batch * context_tokens * spec.kv_bytes_per_token / spec.dtype_bytes
    attention_s = profile.gpu_s(kv_elements, 1)
    costs = {}
    for strategy, alpha in (("hetegen", None), ("streaming", 0.0)):
        placement = place(shapes, max(0, budget), profile, batch, fixed_alpha=alpha)
        costs[strategy] = _cost(strategy, placement, attention_s, fits=budget >= 0)
    all_weights = sum(s.weight_bytes for s in shapes)
    resident = all_resident(shapes, profile, batch)
    costs["resident"] = _cost("resident", resident, attention_s, fits=budget >= all_weights)
    return costs


def _cost(strategy: str, placement: Placement, attention_s: float, fits: bool) -> StepCost:
    offloaded = [layer for layer in placement.layers if not layer.resident]
    offloaded_bytes = sum(layer.weight_bytes for layer in offloaded)
    mean_alpha = (
        sum(layer.alpha * layer.weight_bytes for layer in offloaded) / offloaded_bytes
        if offloaded_bytes
        else 0.0
    )
    return StepCost(
        strategy=strategy,
        batch=placement.batch,
        linear_s=placement.time_s,
        attention_s=attention_s,
        resident_bytes=placement.resident_bytes,
        mean_alpha=mean_alpha,
        fits=fits,
    )


# The target: a 30B-class model on a 24 GB GPU (the HeteGen paper: OPT-30B on an A10,
# batch 1, prompt 512, 64 new tokens). Stated assumptions where nothing was measured:
TARGET_MODEL = "llama-30b"
TARGET_GPU = "a10-24g"
A10_H2D_BYTES_S = 25e9  # PCIe 4.0 x16, effective pinned host-to-device
# The host CPU: a server CPU computing 16-bit GEMMs at 1 TFLOP/s effective, reading weights at
# 40 GB/s effective (so 20e9 weights/s at batch 1, compute bound above batch 25).
ASSUMED_CPU_FLOPS = 1.0e12
ASSUMED_CPU_BANDWIDTH_BYTES_S = 40e9
TARGET_BATCHES = (1, 2, 4, 8, 16, 32)
TARGET_CONTEXT_TOKENS = 512 + 64  # prompt + generated: the KV cache the last step holds


@dataclass(frozen=True, slots=True)
class TargetRow:
    """HeteGen against full streaming for one batch size."""

    batch: int
    hetegen: StepCost
    streaming: StepCost
    resident: StepCost

    @property
    def speedup(self) -> float:
        """Streaming's step time over HeteGen's."""
        return self.streaming.step_s / self.hetegen.step_s


def assumed_a10_profile(gpu: HardwareSpec | None = None) -> HeteGenProfile:
    """A10 host profile from the stated assumptions (CPU roofline, PCIe 4 x16)."""
    gpu = gpu or load_hardware(TARGET_GPU)
    cpu = HeteGenProfile(
        name="a10-host-assumed",
        cpu_weights_per_s=roofline_weights_per_s(
            ASSUMED_CPU_FLOPS, ASSUMED_CPU_BANDWIDTH_BYTES_S, 2, list(TARGET_BATCHES)
        ),
        source=(
            f"assumed CPU: {ASSUMED_CPU_FLOPS:.3g} FLOP/s, "
            f"{ASSUMED_CPU_BANDWIDTH_BYTES_S:.3g} B/s of 16-bit weights"
        ),
    )
    return with_assumed_gpu(cpu, gpu, A10_H2D_BYTES_S)


def thirty_b_on_24gb(
    profile: HeteGenProfile | None = None,
    batches: tuple[int, ...] = TARGET_BATCHES,
    context_tokens: int = TARGET_CONTEXT_TOKENS,
) -> list[TargetRow]:
    """HeteGen's decode step against full streaming and all-resident for a Llama-30B-like
    model on an A10-like 24 GB GPU, at each batch. `profile`: measured CPU rates to use
    instead of the assumed CPU (its GPU rates, if any, are replaced by the A10's)."""
    gpu = load_hardware(TARGET_GPU)
    if profile is None:
        profile = assumed_a10_profile(gpu)
    else:
        profile = with_assumed_gpu(profile, gpu, A10_H2D_BYTES_S)
    spec = load_model_spec(TARGET_MODEL)
    rows = []
    for batch in batches:
        costs = step_costs(spec, profile, gpu.mem_bytes, batch, context_tokens)
        rows.append(TargetRow(batch, costs["hetegen"], costs["streaming"], costs["resident"]))
    return rows
