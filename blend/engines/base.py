"""The engine protocol and the typed objects that cross it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from blend.engines.settings import EngineSettings


class EngineName(StrEnum):
    """The engines blend runs; AUTO picks hetegen when the model does not fit the GPU."""

    AUTO = "auto"
    VLLM = "vllm"
    HETEGEN = "hetegen"  # linear layers split between CPU and GPU (blend/hetegen)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How to start an engine. None means: the engine's or the model's own default."""

    model_dir: Path
    max_model_len: int | None = None  # tokens; default: the model's max_position_embeddings
    max_num_seqs: int | None = None  # running requests per step (vLLM's default: None)
    max_num_batched_tokens: int | None = None  # tokens per step (chunked-prefill budget)
    enable_prefix_caching: bool = True
    dtype: str = "auto"
    seed: int = 0
    kv_cache_gib: float = 1.0  # CPU build only: KV cache size in GiB
    gpu_memory_utilization: float = 0.9  # GPU only: share of GPU memory vLLM may take
    tensor_parallel_size: int = 1
    multiprocessing: bool | None = None  # engine core in its own process; default: GPU only
    num_gpu_blocks: int | None = None  # KV blocks, overriding what memory allows (benchmarks)
    engine: EngineName = EngineName.AUTO  # which engine (blend/engines/selection.py)
    cpu_offload_gb: float = 0.0  # vLLM only: weights it keeps in CPU memory (GiB)
    hetegen_weight_gib: float | None = None  # hetegen: GPU memory for linear weights (GiB)
    hetegen_profile: str | None = None  # hetegen: profile JSON (default: measured at start)
    quantization: str | None = None  # vLLM: weight quantization method (None: the model's)
    enforce_eager: bool | None = None  # vLLM: no CUDA graphs (None: vLLM's default)
    enable_chunked_prefill: bool | None = None  # vLLM on GPUs (None: vLLM's default, on)
    # any other vLLM EngineArgs field the user gave (checked by vLLM's own parser:
    # blend/engines/vllm_options.py), by its name
    engine_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def with_settings(self, settings: EngineSettings) -> EngineConfig:
        """This config starting the engine with `settings`' budgets."""
        return dataclasses.replace(
            self,
            max_num_batched_tokens=settings.max_num_batched_tokens,
            max_num_seqs=settings.max_num_seqs,
        )


@dataclass(frozen=True, slots=True)
class EngineState:
    """What the engine reports after a step (what admission policies decide from)."""

    step: int  # steps so far
    num_running: int  # requests the scheduler runs
    num_waiting: int  # requests handed over and not running (new or preempted)
    kv_blocks_used: int  # KV blocks held by running requests
    kv_blocks_total: int  # KV blocks in the cache
    block_size: int  # tokens per KV block
    max_num_seqs: int  # the engine's settings as it runs them
    max_num_batched_tokens: int
    generated: Mapping[str, int]  # output tokens so far of requests in flight, by request id


class Feed(Protocol):
    """Hands requests to an engine while it runs (see blend/admission for the policies)."""

    @property
    def exhausted(self) -> bool:
        """True once every request has been handed over."""
        ...

    @property
    def paused(self) -> bool:
        """True when a phase of the run ended (the warm-up): the engine loop yields to the
        feed's owner, which acts (re-plans, hands over) before the feed is asked again."""
        ...

    def take(self, state: EngineState, finished: Sequence[EngineOutput]) -> list[EngineRequest]:
        """Requests to add now, given the engine's state and what finished since the last
        call; called before the first step and after every step."""
        ...


# EngineRequest and EngineOutput are made once per request on the executor's hot path: not
# frozen, whose __init__ costs about three times as much (one object.__setattr__ a field).
@dataclass(slots=True)
class EngineRequest:
    request_id: str
    prompt_token_ids: list[int]
    # validated sampling fields (see blend.engines.sampling_fields); read-only: requests with
    # the same fields may share one mapping (execute/requests.py)
    sampling: Mapping[str, Any]


@dataclass(slots=True)
class EngineOutput:
    """What the engine reports for one request; `error` is set when it could not run."""

    request_id: str
    output_text: str | None
    output_token_ids: list[int] | None
    finish_reason: str  # stop | length | abort | error
    n_prompt_tokens: int
    n_cached_tokens: int  # prompt tokens served from the prefix cache
    error: str | None
    started_at: datetime  # when the request was handed to the engine (UTC)
    finished_at: datetime

    @classmethod
    def failed(
        cls, request: EngineRequest, reason: str, started_at: datetime | None = None
    ) -> EngineOutput:
        """The error row of a request that could not run (`reason` says why)."""
        now = datetime.now(UTC)
        return cls(
            request_id=request.request_id,
            output_text=None,
            output_token_ids=None,
            finish_reason="error",
            n_prompt_tokens=len(request.prompt_token_ids),
            n_cached_tokens=0,
            error=reason,
            started_at=started_at or now,
            finished_at=now,
        )

    @property
    def n_output_tokens(self) -> int:
        return len(self.output_token_ids or ())


@dataclass(frozen=True, slots=True)
class EngineStats:
    prefix_cache_queries: int  # prompt tokens looked up in the prefix cache
    prefix_cache_hits: int  # of which were found

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        if self.prefix_cache_queries == 0:
            return None
        return self.prefix_cache_hits / self.prefix_cache_queries


class Engine(Protocol):
    name: str  # e.g. "vllm"
    version: str
    max_model_len: int  # tokens
    settings: EngineSettings  # the budgets it runs with (its defaults filled in)
    start_seconds: float  # wall time the engine took to start (s)
    busy_seconds: float  # wall time spent inside the engine's own calls (add/step) so far (s)

    def generate(self, feed: Feed) -> Iterator[list[EngineOutput]]:
        """Run the requests `feed` hands over; after every engine step, yield the requests
        that finished in it (any order, possibly none: an empty list is a heartbeat that lets
        the caller flush on time while the engine is busy). Ends when the feed is exhausted
        and nothing is left in flight."""
        ...

    def state(self) -> EngineState:
        """The engine's state after its last step."""
        ...

    def stats(self) -> EngineStats: ...

    def close(self) -> None: ...
