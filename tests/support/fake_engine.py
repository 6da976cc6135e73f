"""A deterministic stand-in engine for unit tests of the executor (never used by users)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

from blend.engines.base import (
    EngineConfig,
    EngineOutput,
    EngineRequest,
    EngineState,
    EngineStats,
    Feed,
)
from blend.engines.loop import feed_loop, utc_now
from blend.engines.settings import EngineSettings


class FakeEngine:
    """Echoes the last prompt token `max_tokens` times, one request finished per step, in the
    order requests were handed over.

    Settings: the config's, else 4096 tokens x 256 sequences (like vLLM's CPU defaults).
    It runs the engines' own loop (blend.engines.loop.feed_loop), refusals included: a prompt
    of max_model_len tokens or more is refused as vLLM refuses it (no room for an output), and
    so is every request id in `refuse`.
    Failure injection: `crash_after` raises after that many outputs; `poison` request ids make
    every step raise while one of them is in flight; `oom_above` raises MemoryError on a step
    when more than that many requests are in flight; `start_error` makes the constructor raise.
    `prefix_cache`: report cached prompt tokens as vLLM's block-level prefix cache would with
    nothing evicted (whole BLOCK_SIZE blocks of the longest prefix shared with an earlier
    prompt, the last prompt token always computed); its engine counter also looks up refused
    prompts, as a restarted or preempted request is looked up again in vLLM.
    """

    name = "fake"
    version = "0"
    start_seconds = 0.0
    KV_BLOCKS = 1000
    BLOCK_SIZE = 16

    def __init__(
        self,
        config: EngineConfig,
        max_model_len: int = 64,
        crash_after: int | None = None,
        poison: frozenset[str] = frozenset(),
        oom_above: int | None = None,
        idle_steps: int = 0,
        idle_step_s: float = 0.0,
        start_error: Exception | None = None,
        refuse: frozenset[str] = frozenset(),
        prefix_cache: bool = False,
    ):
        if start_error is not None:
            raise start_error
        self.config = config
        self.max_model_len = max_model_len
        self.settings = EngineSettings(
            config.max_num_batched_tokens or 4096, config.max_num_seqs or 256
        )
        self.crash_after = crash_after
        self.poison = poison
        self.refuse = refuse
        self.oom_above = oom_above
        self.idle_steps = idle_steps  # empty steps (heartbeats) before each finished request
        self.idle_step_s = idle_step_s  # how long each of them takes (s)
        self.seen: list[str] = []
        self.closed = False
        self.busy_seconds = 0.0
        self.n_outputs = 0
        self._inflight: list[EngineRequest] = []
        self._steps = 0
        self._idle = 0  # empty steps taken since the last finished request
        self.prefix_cache = prefix_cache
        self._cached_blocks: set[tuple[int, ...]] = set()  # prompt prefixes of whole blocks
        self._cached: dict[str, int] = {}  # request id -> cached prompt tokens
        self._queries = self._hits = 0  # the engine counter (prompt tokens looked up / found)

    def state(self) -> EngineState:
        running = min(len(self._inflight), self.settings.max_num_seqs)
        return EngineState(
            step=self._steps,
            num_running=running,
            num_waiting=len(self._inflight) - running,
            kv_blocks_used=0,
            kv_blocks_total=self.KV_BLOCKS,
            block_size=self.BLOCK_SIZE,
            max_num_seqs=self.settings.max_num_seqs,
            max_num_batched_tokens=self.settings.max_num_batched_tokens,
            generated={r.request_id: 0 for r in self._inflight},
        )

    def generate(self, feed: Feed) -> Iterator[list[EngineOutput]]:
        return feed_loop(self, feed)

    def admit(self, request: EngineRequest, started_at: datetime) -> str | None:
        self.seen.append(request.request_id)
        if self.prefix_cache:
            self._look_up(request)
        if request.request_id in self.refuse:
            return "refused by the fake engine"
        if len(request.prompt_token_ids) >= self.max_model_len:
            return (
                f"prompt too long: {len(request.prompt_token_ids)} tokens leave no room for "
                f"output within max_model_len {self.max_model_len}"
            )
        self._inflight.append(request)
        if self.prefix_cache:  # its blocks are computed, so later prompts find them
            ids = request.prompt_token_ids
            for end in range(self.BLOCK_SIZE, len(ids) + 1, self.BLOCK_SIZE):
                self._cached_blocks.add(tuple(ids[:end]))
        return None

    def has_work(self) -> bool:
        return bool(self._inflight)

    def step(self) -> list[EngineOutput]:
        """`idle_steps` empty steps, then one finished request."""
        self._check_failures()
        self._steps += 1
        if self._idle < self.idle_steps:
            self._idle += 1
            time.sleep(self.idle_step_s)
            return []
        self._idle = 0
        self.n_outputs += 1
        return [self._output(self._inflight.pop(0))]

    def _check_failures(self) -> None:
        if self.crash_after is not None and self.n_outputs >= self.crash_after:
            raise RuntimeError("engine died")
        if any(r.request_id in self.poison for r in self._inflight):
            raise RuntimeError("poisoned step")
        if self.oom_above is not None and len(self._inflight) > self.oom_above:
            raise MemoryError(f"{len(self._inflight)} requests do not fit")

    def _output(self, request: EngineRequest) -> EngineOutput:
        now = utc_now()
        tokens = [request.prompt_token_ids[-1]] * request.sampling["max_tokens"]
        return EngineOutput(
            request_id=request.request_id,
            output_text=" ".join(map(str, tokens)),
            output_token_ids=tokens,
            finish_reason="length",
            n_prompt_tokens=len(request.prompt_token_ids),
            n_cached_tokens=self._cached.pop(request.request_id, 0),
            error=None,
            started_at=now,
            finished_at=now,
        )

    def _look_up(self, request: EngineRequest) -> None:
        ids = request.prompt_token_ids
        cached = 0
        full = (len(ids) - 1) // self.BLOCK_SIZE * self.BLOCK_SIZE  # the last token computed
        for end in range(self.BLOCK_SIZE, full + 1, self.BLOCK_SIZE):
            if tuple(ids[:end]) not in self._cached_blocks:
                break
            cached = end
        self._cached[request.request_id] = cached
        self._queries += len(ids)
        self._hits += cached

    def stats(self) -> EngineStats:
        return EngineStats(prefix_cache_queries=self._queries, prefix_cache_hits=self._hits)

    def close(self) -> None:
        self.closed = True
