"""Tensor parallelism priced: one engine spanning t GPUs, as vLLM runs it.

vLLM's tensor parallelism (Megatron-style) splits every GEMM's weights and every layer's
attention heads, and so the KV cache, evenly over t GPUs, and all-reduces the activations
twice a layer (after the attention output projection and after the MLP). Priced as
- one aggregate device: t times the FLOP/s, the memory bandwidth and the memory of one GPU
  (each GPU reads 1/t of the weights and of the KV and computes 1/t of the GEMMs);
- plus, every step, 2 L all-reduces of the step's activations (tokens x hidden x dtype bytes):
  a ring all-reduce moves 2 (t - 1) / t of them through each GPU's link, at the hardware's
  all-reduce bandwidth, after a fixed latency each. The latency is a cost per step (added to
  the step overhead); the bandwidth part is a cost per token (CostModel.collective_s_per_token)
  that adds to the step's busy time (vLLM waits for the all-reduce before the next GEMM).
KV heads fewer than t are replicated (vLLM gives each GPU one), so the cache holds t heads'
KV per token then. The hardware's all-reduce numbers are datasheet-level (specs/hardware.json
says where each comes from): a 2-GPU plan is priced, not measured.
"""

from __future__ import annotations

import re
from dataclasses import replace

from blend.cost.model import CostModel

_SIZE_SUFFIX = re.compile(r" x\d+$")  # the aggregate's name: "h100-80g x4"


def one_gpu_name(hardware_name: str) -> str:
    """The hardware spec's own name behind a tensor-parallel aggregate's ("h100-80g x4" ->
    "h100-80g"); any other name as it is."""
    return _SIZE_SUFFIX.sub("", hardware_name)


class TensorParallelError(ValueError):
    """A tensor-parallel size this model or this hardware cannot run or price."""


def tensor_parallel(cost: CostModel, size: int) -> CostModel:
    """`cost` for one engine spanning `size` GPUs of its hardware (size 1: `cost` itself)."""
    if size == 1:
        return cost
    model, hw = cost.model, cost.hardware
    if size < 1:
        raise TensorParallelError(f"tensor parallel size {size}: must be at least 1")
    if cost.tensor_parallel_size != 1 or cost.offload is not None:
        raise TensorParallelError(
            "tensor parallelism applies to one GPU's cost model (not an offloaded or an "
            "already parallel one)"
        )
    if hw.device != "gpu" or hw.allreduce_bandwidth_bytes_s <= 0:
        raise TensorParallelError(
            f"tensor parallel size {size}: hardware {hw.name!r} has no all-reduce bandwidth "
            "(a GPU spec with allreduce_bandwidth_bytes_s), so it cannot be priced"
        )
    if model.n_heads % size:
        raise TensorParallelError(
            f"tensor parallel size {size}: {model.name} has {model.n_heads} attention heads, "
            "not divisible by it (vLLM splits the heads evenly)"
        )
    kv_heads = model.n_kv_heads
    if kv_heads % size and size % kv_heads:
        raise TensorParallelError(
            f"tensor parallel size {size}: {model.name} has {kv_heads} KV heads; vLLM needs "
            "one to divide the other"
        )
    allreduces = 2 * model.n_layers  # a step's all-reduces
    ring_share = 2.0 * (size - 1) / size  # of the data each GPU sends in a ring all-reduce
    activation_bytes = model.hidden_size * model.dtype_bytes  # one token's, per all-reduce
    aggregate = replace(
        hw,
        name=f"{hw.name} x{size}",
        peak_flops=hw.peak_flops * size,
        mem_bandwidth_bytes_s=hw.mem_bandwidth_bytes_s * size,
        mem_bytes=hw.mem_bytes * size,
        step_overhead_s=hw.step_overhead_s + allreduces * hw.allreduce_latency_s,
    )
    return replace(
        cost,
        model=replace(model, n_kv_heads=max(kv_heads, size)),
        hardware=aggregate,
        tensor_parallel_size=size,
        collective_s_per_token=(
            allreduces * ring_share * activation_bytes / hw.allreduce_bandwidth_bytes_s
        ),
    )
