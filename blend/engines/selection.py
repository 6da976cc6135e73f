"""Which engine runs a model: vLLM, or `hetegen` when the weights do not fit the GPU.

`auto` (the default) picks hetegen when the model's weights plus a KV reserve (the config's
kv_cache_gib) plus a fixed reserve (CUDA context, activations) exceed the GPU memory vLLM may
take (total x gpu_memory_utilization); without a GPU it keeps vLLM (the CPU build holds the
weights in host memory anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from blend.cost.offload.layer_costs import DEFAULT_RESERVE_BYTES
from blend.engines.base import Engine, EngineConfig, EngineName

GIB = 2**30
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


@dataclass(frozen=True, slots=True)
class EngineChoice:
    """The engine picked and why (for logs and the run report)."""

    engine: EngineName  # VLLM or HETEGEN
    reason: str


def choose_engine(
    requested: EngineName | str,
    weight_bytes: float,
    gpu_mem_bytes: float | None,
    gpu_memory_utilization: float,
    kv_reserve_bytes: float,
    reserve_bytes: float = DEFAULT_RESERVE_BYTES,
) -> EngineChoice:
    """The engine for `requested` (auto | vllm | hetegen); `gpu_mem_bytes` None: no GPU."""
    try:
        requested = EngineName(requested)
    except ValueError:
        names = ", ".join(EngineName)
        raise ValueError(f"engine {requested!r}: expected one of {names}") from None
    if requested is not EngineName.AUTO:
        return EngineChoice(requested, "asked for")
    if gpu_mem_bytes is None:
        return EngineChoice(
            EngineName.VLLM, "no GPU: vLLM's CPU build holds the weights in host memory"
        )
    needed = weight_bytes + kv_reserve_bytes + reserve_bytes
    allowed = gpu_mem_bytes * gpu_memory_utilization
    sizes = (
        f"weights {weight_bytes / GIB:.1f} GiB + KV {kv_reserve_bytes / GIB:.1f} GiB + reserve "
        f"{reserve_bytes / GIB:.1f} GiB vs {allowed / GIB:.1f} GiB of GPU memory"
    )
    if needed > allowed:
        return EngineChoice(EngineName.HETEGEN, f"does not fit: {sizes}")
    return EngineChoice(EngineName.VLLM, f"fits: {sizes}")


def model_weight_bytes(model_dir: Path) -> int:
    """Bytes of the weight files in a model folder (safetensors or PyTorch checkpoints)."""
    files = [p for p in Path(model_dir).iterdir() if p.name.endswith(WEIGHT_SUFFIXES)]
    if not files:
        raise FileNotFoundError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) in {model_dir}")
    return sum(p.stat().st_size for p in files)


def local_gpu_mem_bytes() -> float | None:
    """Total memory of GPU 0 (bytes), None without one. Asks NVML first, so that deciding
    does not create a CUDA context in this process before vLLM starts its workers."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            if pynvml.nvmlDeviceGetCount() == 0:
                return None
            return float(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).total)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML (no driver, or not installed): ask torch
        import torch

        if not torch.cuda.is_available():
            return None
        return float(torch.cuda.get_device_properties(0).total_memory)


def engine_choice(config: EngineConfig) -> EngineChoice:
    """The choice for `config` on this machine."""
    tp = config.tensor_parallel_size
    if tp > 1:  # hetegen splits layers between one GPU and the CPU, never across GPUs
        if config.engine is EngineName.HETEGEN:
            raise ValueError(
                f"--tensor-parallel-size {tp}: the hetegen engine runs on one GPU; use "
                "--engine vllm (or auto)"
            )
        return EngineChoice(EngineName.VLLM, f"tensor parallel over {tp} GPUs")
    if config.engine is not EngineName.AUTO:
        return choose_engine(config.engine, 0.0, None, 1.0, 0.0)
    return choose_engine(
        EngineName.AUTO,
        model_weight_bytes(config.model_dir),
        local_gpu_mem_bytes(),
        config.gpu_memory_utilization,
        config.kv_cache_gib * GIB,
        DEFAULT_RESERVE_BYTES,
    )


def make_engine(config: EngineConfig) -> Engine:
    """Start the engine `config` asks for (the executor's default engine factory)."""
    if engine_choice(config).engine is EngineName.HETEGEN:
        from blend.engines.hetegen_engine import HeteGenEngine

        return HeteGenEngine(config)
    from blend.engines.vllm_engine import VllmEngine

    return VllmEngine(config)
