"""A deterministic stand-in engine for unit tests of the executor (never used by users)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from blend.engines.base import EngineConfig, EngineOutput, EngineRequest, EngineStats


class FakeEngine:
    """Echoes the last prompt token `max_tokens` times; can crash after `crash_after` outputs."""

    name = "fake"
    version = "0"
    start_seconds = 0.0

    def __init__(
        self, config: EngineConfig, max_model_len: int = 64, crash_after: int | None = None
    ):
        self.config = config
        self.max_model_len = max_model_len
        self.crash_after = crash_after
        self.seen: list[str] = []
        self.closed = False

    def generate(self, requests: Iterable[EngineRequest]) -> Iterator[EngineOutput]:
        for n, request in enumerate(requests):
            if self.crash_after is not None and n >= self.crash_after:
                raise RuntimeError("engine died")
            self.seen.append(request.request_id)
            now = datetime.now(UTC)
            too_long = len(request.prompt_token_ids) >= self.max_model_len
            tokens = (
                None
                if too_long
                else [request.prompt_token_ids[-1]] * request.sampling["max_tokens"]
            )
            yield EngineOutput(
                request_id=request.request_id,
                output_text=None if too_long else " ".join(map(str, tokens or [])),
                output_token_ids=tokens,
                finish_reason="error" if too_long else "length",
                n_prompt_tokens=len(request.prompt_token_ids),
                n_cached_tokens=0,
                error="prompt too long" if too_long else None,
                started_at=now,
                finished_at=now,
            )

    def stats(self) -> EngineStats:
        return EngineStats(prefix_cache_queries=0, prefix_cache_hits=0)

    def close(self) -> None:
        self.closed = True
