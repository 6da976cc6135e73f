"""The null engine: answers every request at once with a placeholder, no model, no vLLM.

It measures what the executor costs by itself (admission, result rows, Parquet parts,
progress, lineage): every request handed over finishes in the next step, so a run's wall time
is the executor's own. Its answers are not model output: `output_text` is PLACEHOLDER_TEXT,
`output_token_ids` the prompt's last token ids repeated to `output_tokens` ids (at most the
request's max_tokens), and lineage records the engine as "null".

Benchmarks and tests only (bench/executor_overhead.py): it is not an `--engine` choice,
because its rows would count as the model's answers in a user's store (incremental planning
skips prompts that have one, and estimates borrow their lengths).
"""

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
from blend.engines.settings import DEFAULT_ENGINE_SETTINGS, EngineSettings

NULL_ENGINE_NAME = "null"
PLACEHOLDER_TEXT = "[placeholder answer of the null engine]"
DEFAULT_OUTPUT_TOKENS = 4  # tokens per answer, at most the request's max_tokens
_NO_CONTEXT_LIMIT = 1 << 30  # tokens: the engine refuses no prompt unless the config names one
_KV_BLOCKS = 1 << 20  # an ample cache: admission is never held back by memory
_BLOCK_SIZE = 16  # tokens per KV block (vLLM's on GPUs)


class NullEngine:
    """An Engine (blend/engines/base.py) that answers at once (see the module docstring).

    Settings: the config's budgets, else DEFAULT_ENGINE_SETTINGS. A prompt of the config's
    max_model_len tokens or more is refused as vLLM refuses it (an error row).
    """

    name = NULL_ENGINE_NAME
    version = "1"

    def __init__(self, config: EngineConfig, output_tokens: int = DEFAULT_OUTPUT_TOKENS) -> None:
        if output_tokens < 1:
            raise ValueError(f"NullEngine(output_tokens=...) must be >= 1, got {output_tokens}")
        self.config = config
        self.max_model_len = config.max_model_len or _NO_CONTEXT_LIMIT
        self.settings = EngineSettings(
            config.max_num_batched_tokens or DEFAULT_ENGINE_SETTINGS.max_num_batched_tokens,
            config.max_num_seqs or DEFAULT_ENGINE_SETTINGS.max_num_seqs,
        )
        self.params: dict[str, object] = {"null_output_tokens": output_tokens}
        self.start_seconds = 0.0
        self.busy_seconds = 0.0
        # when the first step began (perf_counter, process_time; s): a benchmark's start
        # (imports, staging) ends there, and the executor's steady rate is measured from it
        self.first_step_at: tuple[float, float] | None = None
        self._output_tokens = output_tokens
        self._inflight: list[tuple[EngineRequest, datetime]] = []
        self._steps = 0
        self._prompt_tokens = 0  # looked up in the (absent) prefix cache: none found

    def generate(self, feed: Feed) -> Iterator[list[EngineOutput]]:
        return feed_loop(self, feed)

    def state(self) -> EngineState:
        running = min(len(self._inflight), self.settings.max_num_seqs)
        return EngineState(
            step=self._steps,
            num_running=running,
            num_waiting=len(self._inflight) - running,
            kv_blocks_used=0,
            kv_blocks_total=_KV_BLOCKS,
            block_size=_BLOCK_SIZE,
            max_num_seqs=self.settings.max_num_seqs,
            max_num_batched_tokens=self.settings.max_num_batched_tokens,
            generated={},  # nothing is ever part-way: a step finishes all it holds
        )

    def admit(self, request: EngineRequest, started_at: datetime) -> str | None:
        n_prompt = len(request.prompt_token_ids)
        if n_prompt >= self.max_model_len:
            return (
                f"prompt too long: {n_prompt} tokens leave no room for output within "
                f"max_model_len {self.max_model_len}"
            )
        self._inflight.append((request, started_at))
        self._prompt_tokens += n_prompt
        return None

    def has_work(self) -> bool:
        return bool(self._inflight)

    def step(self) -> list[EngineOutput]:
        """Finish every request in flight."""
        started = time.perf_counter()
        if self.first_step_at is None:
            self.first_step_at = (started, time.process_time())
        self._steps += 1
        now = utc_now()
        finished = [self._answer(request, at, now) for request, at in self._inflight]
        self._inflight = []
        self.busy_seconds += time.perf_counter() - started
        return finished

    def _answer(self, request: EngineRequest, started_at: datetime, now: datetime) -> EngineOutput:
        limit = request.sampling.get("max_tokens") or self._output_tokens
        n = min(self._output_tokens, limit)
        ids = request.prompt_token_ids[-n:] or [0]
        if len(ids) < n:
            ids = (ids * n)[:n]  # the prompt's last ids, repeated to n
        return EngineOutput(
            request_id=request.request_id,
            output_text=PLACEHOLDER_TEXT,
            output_token_ids=ids,
            finish_reason="length" if n == limit else "stop",
            n_prompt_tokens=len(request.prompt_token_ids),
            n_cached_tokens=0,
            error=None,
            started_at=started_at,
            finished_at=now,
        )

    def stats(self) -> EngineStats:
        return EngineStats(prefix_cache_queries=self._prompt_tokens, prefix_cache_hits=0)

    def close(self) -> None:
        self._inflight = []
