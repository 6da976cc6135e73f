"""The typed objects that cross the simulator's boundary: requests, config, result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from blend.engines.settings import DEFAULT_ENGINE_SETTINGS


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One request as the simulator sees it."""

    request_id: str
    prompt_token_ids: Sequence[int] | np.ndarray  # the prompt (token ids)
    output_len: int  # true output length (tokens); known to the simulator only

    def __post_init__(self) -> None:
        if len(self.prompt_token_ids) == 0:
            raise ValueError(f"request {self.request_id!r}: empty prompt (0 tokens)")
        if self.output_len < 1:
            raise ValueError(
                f"request {self.request_id!r}: output_len must be >= 1, got {self.output_len}"
            )


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The engine being simulated (vLLM v1 names)."""

    # token budget per step (decodes + prefill chunks)
    max_num_batched_tokens: int = DEFAULT_ENGINE_SETTINGS.max_num_batched_tokens
    max_num_seqs: int = DEFAULT_ENGINE_SETTINGS.max_num_seqs  # running requests at most
    kv_capacity_tokens: int | None = None  # KV cache size (tokens); None: CostModel's
    block_size: int = 16  # tokens per KV block (vLLM GPU 16; the CPU build uses 128)
    enable_prefix_caching: bool = True
    chunked_prefill: bool = True  # False: a prompt is scheduled whole or waits

    def __post_init__(self) -> None:
        for name in ("max_num_batched_tokens", "max_num_seqs", "block_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"SimConfig.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class SimResult:
    """What a simulated run took, and where the time went.

    makespan_s = overhead_s + compute_bound_s + memory_bound_s (each step costs its overhead
    plus the larger of its compute and memory times; the step lands in one of the two sums).
    """

    makespan_s: float  # simulated wall time from the first step to the last finish
    n_steps: int  # engine steps (iterations)
    input_tokens: int  # prompt tokens of all requests
    output_tokens: int  # output tokens generated (= sum of output_len)
    throughput_tok_s: float  # (input + output tokens) / makespan
    prefix_cache_hit_tokens: int  # prompt tokens served from the prefix cache (all admissions)
    prefix_cache_query_tokens: int  # tokens looked up in the prefix cache (all admissions)
    prefix_cache_hit_rate: float  # hit tokens / looked-up tokens (0 when nothing looked up)
    n_preemptions: int  # requests preempted (recompute) for lack of KV blocks
    peak_kv_blocks_used: int  # most KV blocks held by running requests at once
    kv_capacity_blocks: int  # KV blocks in the cache
    computed_tokens: int  # tokens fed through the model (prefill after hits + decodes + redo)
    compute_bound_s: float  # time of steps whose compute exceeded their memory time
    memory_bound_s: float  # time of the other steps (beyond their overhead)
    n_compute_bound_steps: int
    overhead_s: float  # summed fixed per-step overhead
    weight_read_s: float  # summed time to read the weights once per step (in memory_bound_s
    #                       and hidden under compute in compute-bound steps)
    mean_batch_size: float  # requests scheduled per step, mean over steps
    mean_tokens_per_step: float  # tokens scheduled per step, mean over steps
    busy_without_weights_s: float  # busy time (overhead excluded) summed over steps as if no
    #                                step read the weights: combine(compute, memory - weights)
    drain_s: float  # time (overhead included) of the steps after the last admission: the tail
    #                 where the engine only finishes the requests it has
    compute_s: float  # compute time (FLOPs / F_eff) summed over steps
    kv_s: float  # KV-cache traffic time (bytes / W_eff, weights excluded) summed over steps
    kv_discarded_tokens: int  # KV tokens preemptions threw away (computed again later)
    attention_s: float = 0.0  # prefill-attention time (FLOPs / F_attn_eff) summed over steps
    mean_kv_occupancy: float = 0.0  # KV blocks in use / KV blocks in the cache, mean over
    #                                 steps (0..1)
    # request indices in the order they were first scheduled: the order the engine really saw
    admission_order: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False, compare=False
    )

    def breakdown(self) -> dict[str, float | int]:
        """The fields that explain the gap to the optimum, as a flat dict (for JSON)."""
        return {
            "compute_bound_s": self.compute_bound_s,
            "memory_bound_s": self.memory_bound_s,
            "n_compute_bound_steps": self.n_compute_bound_steps,
            "overhead_s": self.overhead_s,
            "weight_read_s": self.weight_read_s,
            "mean_batch_size": self.mean_batch_size,
            "mean_tokens_per_step": self.mean_tokens_per_step,
            "computed_tokens": self.computed_tokens,
            "n_preemptions": self.n_preemptions,
            "peak_kv_blocks_used": self.peak_kv_blocks_used,
            "kv_capacity_blocks": self.kv_capacity_blocks,
            "prefix_cache_hit_rate": self.prefix_cache_hit_rate,
            "busy_without_weights_s": self.busy_without_weights_s,
            "drain_s": self.drain_s,
            "compute_s": self.compute_s,
            "kv_s": self.kv_s,
            "kv_discarded_tokens": self.kv_discarded_tokens,
            "attention_s": self.attention_s,
            "mean_kv_occupancy": self.mean_kv_occupancy,
        }
