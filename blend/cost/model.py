"""Model and hardware specs, and the cost model planners and the simulator share.

Per request (docs/papers.md, BlendServe), for a prompt of p tokens and an output of d tokens:
    Comp(r) = 2 (p + d) P / F_eff                       seconds of dense compute
    Mem(r)  = (p d + d^2 / 2) * kv_bytes_per_token / W_eff   seconds of KV reads
    rho(r)  = Comp / Mem   (> 1 compute-heavy, < 1 memory-heavy)
Specs are data (blend/cost/specs/*.json), overridable by a JSON file of the same shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

SPECS_DIR = Path(__file__).with_name("specs")
Tokens = TypeVar("Tokens", float, np.ndarray)  # a token count, or an array of them


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    n_params: float  # P: parameters
    n_layers: int  # L
    hidden_size: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    dtype_bytes: int = 2  # bytes per weight and per KV element

    @property
    def weight_bytes(self) -> float:
        return self.n_params * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        """K and V of every layer for one token (bytes): 2 * L * H_kv * dtype_bytes."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * self.dtype_bytes


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    name: str
    peak_flops: float  # F: dense bf16 FLOP/s
    mem_bandwidth_bytes_s: float  # W: memory bandwidth (bytes/s)
    mem_bytes: float  # device memory (bytes)
    flops_efficiency: float = 1.0  # achievable share of peak_flops (fitted)
    bandwidth_efficiency: float = 1.0  # achievable share of bandwidth (fitted)
    step_overhead_s: float = 0.0  # fixed cost of one engine step (s, fitted)
    # GPU: vLLM's default gpu_memory_utilization, the share of the memory vLLM takes for the
    # weights and the KV cache (CostModel.kv_cache_bytes; the user's --gpu-memory-utilization
    # replaces it: with_memory_utilization). CPU: the share of mem_bytes, the CPU build's KV
    # space (VLLM_CPU_KVCACHE_SPACE), that holds KV; vLLM's CPU build takes no utilization.
    memory_utilization: float = 0.9
    # GPUs overlap compute with memory traffic within a step (step time = the larger of the
    # two); measured on the CPU build, they add up (a better fit of real step times there).
    overlap_compute_memory: bool = True
    # vLLM runs attention as its own kernels after a layer's GEMMs, so the KV traffic and the
    # prefill attention FLOPs add to the GEMM time instead of hiding under it; only the
    # weight reads overlap the GEMMs' compute (fitted on H200 model steps: rms error 3.3%
    # against 7.3% for one max over everything). False: everything overlaps (NanoFlow-like).
    attention_after_gemm: bool = False
    # how sharp the GEMM roofline's knee is: max(compute, weights) becomes
    # (compute^k + weights^k)^(1/k); 0 keeps the hard max (fitted on H200: k = 2.5)
    roofline_sharpness: float = 0.0
    attention_flops_efficiency: float = 0.0  # share of peak FLOP/s prefill attention gets
    #                                          (0: flops_efficiency)
    device: str = "gpu"  # "gpu" or "cpu": which of vLLM's builds and defaults apply
    # GPU to GPU (NVLink): the all-reduce bus bandwidth one GPU gets (bytes/s) and the
    # latency of one all-reduce (s); what tensor parallelism costs (blend/cost/parallel.py).
    # 0: not known, tensor parallelism cannot be priced on this hardware.
    allreduce_bandwidth_bytes_s: float = 0.0
    allreduce_latency_s: float = 0.0
    source: str = ""  # where the numbers come from

    @property
    def effective_flops(self) -> float:
        return self.peak_flops * self.flops_efficiency

    @property
    def effective_bandwidth(self) -> float:
        return self.mem_bandwidth_bytes_s * self.bandwidth_efficiency

    @property
    def effective_attention_flops(self) -> float:
        return self.peak_flops * (self.attention_flops_efficiency or self.flops_efficiency)


def _load(kind: str, name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        data = json.loads(path.read_text())
        return {"name": data.get("name", path.stem), **data}
    table = json.loads((SPECS_DIR / f"{kind}.json").read_text())
    if name_or_path not in table:
        raise ValueError(
            f"Unknown {kind[:-1] if kind.endswith('s') else kind} spec {name_or_path!r}: "
            f"known {', '.join(sorted(table))}, or a path to a .json file"
        )
    return {"name": name_or_path, **table[name_or_path]}


# fields renamed since specs were first written: old name -> new (stored files stay loadable)
_RENAMED = {"kv_memory_fraction": "memory_utilization"}


def _build(cls: type, data: dict[str, Any]) -> Any:
    data = {_RENAMED.get(key, key): value for key, value in data.items()}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{cls.__name__} {data.get('name')!r}: unknown fields {unknown}")
    return cls(**data)


def load_model_spec(name_or_path: str) -> ModelSpec:
    """A model spec by name (blend/cost/specs/models.json) or from a JSON file."""
    spec: ModelSpec = _build(ModelSpec, _load("models", name_or_path))
    return spec


def load_hardware(name_or_path: str) -> HardwareSpec:
    """A hardware spec by name (blend/cost/specs/hardware.json) or from a JSON file."""
    spec: HardwareSpec = _build(HardwareSpec, _load("hardware", name_or_path))
    return spec


def model_spec_from_dir(model_dir: Path) -> ModelSpec:
    """The spec of a Llama-architecture model folder (its config.json): GQA attention, SwiGLU
    MLP, RMSNorms, embeddings (counted twice unless tied)."""
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
        h = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads", heads))
        head_dim = int(config.get("head_dim") or h // heads)
        layers, inter = int(config["num_hidden_layers"]), int(config["intermediate_size"])
        vocab = int(config["vocab_size"])
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(
            f"{path}: cannot derive a model spec ({type(exc).__name__}: {exc}); "
            "pass --model-spec NAME or a JSON file"
        ) from None
    attention = h * head_dim * (2 * heads + 2 * kv_heads)
    per_layer = attention + 3 * h * inter + 2 * h
    embeddings = (1 if config.get("tie_word_embeddings") else 2) * vocab * h
    dtype_bytes = 4 if config.get("torch_dtype") == "float32" else 2
    return ModelSpec(
        name=_folder_label(Path(model_dir)),
        n_params=float(layers * per_layer + embeddings + h),
        n_layers=layers,
        hidden_size=h,
        n_heads=heads,
        n_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=inter,
        vocab_size=vocab,
        dtype_bytes=dtype_bytes,
    )


def _folder_label(model_dir: Path) -> str:
    """A model folder's name; for a snapshot of the Hugging Face cache
    (`models--org--name/snapshots/<commit>`), the model's id, org/name, not the commit.
    The rule of blend.engines.model_source.model_source (which sits above the cost layer)."""
    repo = model_dir.parent.parent
    if model_dir.parent.name == "snapshots" and repo.name.startswith("models--"):
        return repo.name.removeprefix("models--").replace("--", "/")
    return model_dir.name


def with_memory_utilization(hardware: HardwareSpec, utilization: float | None) -> HardwareSpec:
    """`hardware` with vLLM's gpu_memory_utilization set to `utilization` (the user's
    --gpu-memory-utilization; None: the spec's default). A CPU spec is returned as it is:
    vLLM's CPU build sizes its KV cache by VLLM_CPU_KVCACHE_SPACE and ignores the option."""
    if utilization is None or hardware.device == "cpu":
        return hardware
    if not 0.0 < utilization <= 1.0:
        raise ValueError(f"gpu_memory_utilization {utilization}: must be in (0, 1]")
    return replace(hardware, memory_utilization=utilization)


def local_hardware_name() -> str:
    """The hardware spec of this machine's accelerator: the first CUDA device's, by name
    (a100-80g, h100-80g, h200), else cpu-local. Imports torch (seconds)."""
    import torch

    if not torch.cuda.is_available():
        return "cpu-local"
    name = torch.cuda.get_device_name(0).lower()
    for marker, spec in (("h200", "h200"), ("h100", "h100-80g"), ("a100", "a100-80g")):
        if marker in name:
            return spec
    raise ValueError(
        f"no hardware spec for GPU {name!r}: pass --hardware NAME (known: a100-80g, h100-80g, "
        "h200) or a JSON file of the same shape as blend/cost/specs/hardware.json"
    )


@dataclass(frozen=True, slots=True)
class OffloadTerm:
    """A model larger than the GPU, run HeteGen-style (blend/hetegen): the linear layers left
    off the GPU cost each step the placement's per-layer max(CPU part, copy + GPU part),
    given at a few step sizes and interpolated linearly in the step's tokens (extrapolated
    from the last two points above them); the roofline then covers what stays on the GPU."""

    resident_params: float  # parameters on the GPU: resident linear layers, embeddings, norms
    tokens: tuple[float, ...]  # step sizes (tokens) the offloaded time was placed at, rising
    offloaded_s: tuple[float, ...]  # seconds of the offloaded layers in a step of that size
    source: str = ""  # how the term was made (profile, budget)

    def __post_init__(self) -> None:
        if not self.tokens or len(self.tokens) != len(self.offloaded_s):
            raise ValueError("OffloadTerm: tokens and offloaded_s must be non-empty and alike")
        if any(b <= a for a, b in zip(self.tokens, self.tokens[1:], strict=False)):
            raise ValueError(f"OffloadTerm: tokens must rise, got {self.tokens}")

    def extra_s(self, tokens: float) -> float:
        """Seconds the offloaded layers add to a step of `tokens` tokens (step_kernel's
        offload_s computes the same, in the same order)."""
        xs, ys = self.tokens, self.offloaded_s
        n = len(xs)
        if n == 1 or tokens <= xs[0]:
            return ys[0]
        i = 1
        while i < n - 1 and tokens > xs[i]:
            i += 1
        return ys[i - 1] + (ys[i] - ys[i - 1]) * (tokens - xs[i - 1]) / (xs[i] - xs[i - 1])


# hetegen's KV cache as priced (not measured): this share of the GPU memory its resident
# weights leave, as every GPU engine was priced before vLLM's own rule (kv_cache_bytes)
OFFLOAD_KV_SHARE = 0.9


@dataclass(frozen=True, slots=True)
class CostModel:
    """Per-request resource costs for one model on one piece of hardware."""

    model: ModelSpec
    hardware: HardwareSpec
    offload: OffloadTerm | None = None  # set when the weights do not all fit the GPU
    # tensor parallelism (blend/cost/parallel.py): the GPUs one engine spans (the hardware is
    # then their aggregate) and the all-reduce time each token adds to a step (s)
    tensor_parallel_size: int = 1
    collective_s_per_token: float = 0.0

    @property
    def roofline_params(self) -> float:
        """Parameters the GPU reads and multiplies each step (all, unless offloaded)."""
        return self.model.n_params if self.offload is None else self.offload.resident_params

    @property
    def roofline_weight_bytes(self) -> float:
        """Weight bytes held in GPU memory and read each step at W_eff."""
        return self.roofline_params * self.model.dtype_bytes

    @property
    def compute_s_per_token(self) -> float:
        """Dense compute (GEMMs) of one token through the whole model (s): 2 FLOPs per
        parameter at the effective rate, attention left out."""
        return 2.0 * self.model.n_params / self.hardware.effective_flops

    @property
    def kv_read_s_per_token(self) -> float:
        """One read of one token's KV cache, every layer (s), at the effective bandwidth."""
        return self.model.kv_bytes_per_token / self.hardware.effective_bandwidth

    @property
    def weight_read_s(self) -> float:
        """One read of the weights held on the GPU (s): a step's floor when it is small."""
        return self.roofline_weight_bytes / self.hardware.effective_bandwidth

    def comp_s(self, prompt_tokens: Tokens, output_tokens: Tokens) -> Tokens:
        """Comp(r): dense compute time of a request (s), attention FLOPs left out; per
        request for arrays of token counts."""
        return self.compute_s_per_token * (prompt_tokens + output_tokens)

    def mem_s(self, prompt_tokens: Tokens, output_tokens: Tokens) -> Tokens:
        """Mem(r): time to read the request's KV cache over all its decode steps (s): each
        output token reads the prompt and the output so far; per request for arrays."""
        kv_token_reads = prompt_tokens * output_tokens + output_tokens * output_tokens / 2.0
        return self.kv_read_s_per_token * kv_token_reads

    def density(self, prompt_tokens: float, output_tokens: float) -> float:
        """rho(r) = Comp / Mem; infinite for a request with no output (pure prefill)."""
        mem = self.mem_s(prompt_tokens, output_tokens)
        return float("inf") if mem == 0 else self.comp_s(prompt_tokens, output_tokens) / mem

    @property
    def kv_cache_bytes(self) -> float:
        """Bytes of KV cache the engine gets (<= 0: the weights do not fit), by the engine
        that runs this cost model.

        vLLM on GPUs, its rule: memory_utilization x the memory, less the weights. With
        tensor parallelism the hardware is t GPUs' aggregate holding one copy of the
        weights, so this is t x (u x one GPU's memory - weights / t), each GPU's share as
        vLLM sizes it. The activations' peak that vLLM's profiling run also subtracts is not
        modelled: its cache is somewhat smaller. vLLM's CPU build: memory_utilization (1.0)
        of mem_bytes, its KV space (VLLM_CPU_KVCACHE_SPACE), which the weights do not share.
        hetegen (offloaded): OFFLOAD_KV_SHARE of the memory its resident weights leave (its
        placement already kept room for a reference batch's KV); it takes no
        gpu_memory_utilization."""
        hw, weights = self.hardware, self.roofline_weight_bytes
        if self.offload is not None:
            return (hw.mem_bytes - weights) * OFFLOAD_KV_SHARE
        if hw.device == "cpu":
            return hw.memory_utilization * hw.mem_bytes
        return hw.memory_utilization * hw.mem_bytes - weights

    @property
    def kv_capacity_tokens(self) -> int:
        """Tokens of KV cache that fit (kv_cache_bytes)."""
        free = self.kv_cache_bytes
        if free <= 0:
            hw = self.hardware
            vllm_gpu = hw.device != "cpu" and self.offload is None
            share = f"{hw.memory_utilization:g} of " if vllm_gpu else ""
            raise ValueError(
                f"{self.model.name} weights ({self.roofline_weight_bytes / 2**30:.1f} GiB) do not "
                f"fit in {share}{hw.name} memory ({hw.mem_bytes / 2**30:.1f} GiB): "
                "simulate with --offload hetegen"
                + (" or a larger --gpu-memory-utilization" if vllm_gpu else "")
            )
        return int(free // self.model.kv_bytes_per_token)
