"""Engine scheduler settings: vLLM's own defaults, what vLLM accepts, and the candidates a
plan's settings are searched among.

Invariant: every EngineSettings that leaves this module through `validated` starts vLLM:
max_num_batched_tokens >= max_num_seqs (vLLM refuses less), at most max_num_seqs x
max_model_len (vLLM warns beyond: tokens no step can use), and, without chunked prefill (the
CPU build), at least max_model_len (a step must fit a whole prompt).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from blend.cost.model import HardwareSpec

GIB = 2**30


class SettingsSource(StrEnum):
    VLLM_DEFAULT = "vllm-default"  # what vLLM configures for offline use (its LLM class)
    SEARCH = "search"  # the best candidate in simulation, with estimated output lengths
    EXPLICIT = "explicit"  # set by the user
    HETEGEN_DEFAULT = "hetegen-default"  # the hetegen engine's own (blend/engines/hetegen_engine)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How the engine schedules (vLLM names)."""

    max_num_batched_tokens: int  # tokens per step (prefill chunks + one per decode)
    max_num_seqs: int  # running requests at most
    chunked_prefill: bool = True  # False: a prompt is scheduled whole (vLLM's CPU build here)
    source: SettingsSource = SettingsSource.VLLM_DEFAULT

    def __post_init__(self) -> None:
        for name in ("max_num_batched_tokens", "max_num_seqs"):
            if getattr(self, name) < 1:
                raise ValueError(f"EngineSettings.{name} must be >= 1, got {getattr(self, name)}")

    def validated(self, max_model_len: int) -> EngineSettings:
        """The nearest settings vLLM starts with (see the module invariant)."""
        tokens = max(self.max_num_batched_tokens, self.max_num_seqs)
        tokens = min(tokens, self.max_num_seqs * max_model_len)
        if not self.chunked_prefill:
            tokens = max(tokens, max_model_len)
        return replace(self, max_num_batched_tokens=tokens)

    def label(self) -> str:
        return f"{self.max_num_batched_tokens} tokens x {self.max_num_seqs} seqs"


# vLLM's offline default on GPUs below the H100 class, and blend's wherever no hardware is
# known (the simulator's and the admission policies' defaults): the one place it is written
DEFAULT_ENGINE_SETTINGS = EngineSettings(8192, 256)


def vllm_default_settings(
    hardware: HardwareSpec, max_model_len: int, *, tensor_parallel_size: int = 1
) -> EngineSettings:
    """What vLLM 0.32 configures for offline use (`LLM`, the LLM_CLASS usage context) on this
    hardware when the user sets neither budget (EngineArgs.get_batch_defaults):
    16384 tokens x 1024 seqs on GPUs of >= 70 GiB other than the A100 (H100, H200) and on any
    GPU of >= 160 GiB, 8192 x 256 on other GPUs (the A100 included), 4096 x 256 per
    tensor-parallel rank on CPUs (which run without chunked prefill here, so the budget is at
    least max_model_len). vLLM looks at one GPU's memory: `hardware` of a tensor-parallel
    engine is its GPUs' aggregate (blend/cost/parallel.py), so it is divided back."""
    memory, name = hardware.mem_bytes / tensor_parallel_size, hardware.name.lower()
    if hardware.device == "cpu":
        tokens, seqs = 4096 * tensor_parallel_size, 256 * tensor_parallel_size
        return EngineSettings(max(tokens, max_model_len), seqs, chunked_prefill=False)
    if memory >= 160 * GIB or (memory >= 70 * GIB and "a100" not in name):
        return EngineSettings(16384, 1024)
    return DEFAULT_ENGINE_SETTINGS


HETEGEN_MAX_NUM_SEQS = 64  # the hetegen engine's waves: requests at most


def hetegen_default_settings(max_model_len: int) -> EngineSettings:
    """What the hetegen engine runs with when no budget is given: waves of up to 64
    requests, whole prompts (no chunked prefill) of at most max(8192, max_model_len) tokens."""
    tokens = max(DEFAULT_ENGINE_SETTINGS.max_num_batched_tokens, max_model_len)
    return EngineSettings(
        tokens, HETEGEN_MAX_NUM_SEQS, chunked_prefill=False, source=SettingsSource.HETEGEN_DEFAULT
    )


# max_num_batched_tokens searched: from budgets that spread prefill thin over long decodes (the
# token budget as the only throttle) to vLLM's largest default
TOKEN_CANDIDATES = (128, 256, 512, 1024, 2048, 4096, 8192, 16384)
MEMORY_CENTRIC_MAX_SEQS = 2048  # running requests at most when KV memory is the bound


def memory_centric_seqs(kv_capacity_tokens: int, mean_footprint_tokens: float) -> int:
    """BatchLLM's memory-centric batching as a vLLM setting: as many running requests as KV
    memory holds at the mean footprint (prompt + half the output), not a fixed count."""
    fit = int(kv_capacity_tokens // max(1.0, mean_footprint_tokens))
    return max(1, min(MEMORY_CENTRIC_MAX_SEQS, fit))


def candidate_settings(
    default: EngineSettings, max_model_len: int, memory_centric: int | None = None
) -> list[EngineSettings]:
    """Settings searched for a plan: every token budget of TOKEN_CANDIDATES and the default,
    with the default max_num_seqs and, when given, the memory-centric one (validated,
    deduplicated, default first)."""
    seqs = [default.max_num_seqs]
    if memory_centric is not None and memory_centric != default.max_num_seqs:
        seqs.append(memory_centric)
    seen: set[tuple[int, int]] = set()
    out: list[EngineSettings] = []
    for tokens in (default.max_num_batched_tokens, *TOKEN_CANDIDATES):
        for n_seqs in seqs:
            settings = EngineSettings(
                tokens, n_seqs, default.chunked_prefill, SettingsSource.SEARCH
            ).validated(max_model_len)
            key = (settings.max_num_batched_tokens, settings.max_num_seqs)
            if key not in seen:
                seen.add(key)
                out.append(settings)
    return out
