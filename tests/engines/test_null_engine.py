"""The null engine on its own: answers at once through the engines' loop, no model needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from blend.engines.base import EngineConfig, EngineRequest
from blend.engines.feeds import OrderedFeed
from blend.engines.null_engine import PLACEHOLDER_TEXT, NullEngine


def _request(request_id: str, ids: list[int], max_tokens: int) -> EngineRequest:
    return EngineRequest(request_id, ids, {"max_tokens": max_tokens})


def test_every_request_is_answered_in_the_step_after_it_was_handed_over() -> None:
    engine = NullEngine(EngineConfig(model_dir=Path("no-model-needed"), max_num_seqs=2))
    requests = [_request(f"r{i}", [i, i + 1, i + 2], max_tokens=16) for i in range(5)]
    assert engine.first_step_at is None
    generated = engine.generate(OrderedFeed(requests))  # a window of 2 x 2 in flight
    steps = [next(generated)]
    first_step_at = engine.first_step_at  # where a benchmark's steady part begins
    steps += list(generated)
    assert first_step_at is not None and engine.first_step_at == first_step_at
    assert [[o.request_id for o in step] for step in steps] == [
        ["r0", "r1", "r2", "r3"],
        ["r4"],
    ]
    answer = steps[0][1]
    assert answer.output_text == PLACEHOLDER_TEXT
    assert answer.output_token_ids == [1, 2, 3, 1]  # its last (up to) 4 ids, repeated to 4
    assert (answer.finish_reason, answer.n_prompt_tokens, answer.n_cached_tokens) == (
        "stop",
        3,
        0,
    )
    assert answer.error is None and answer.started_at <= answer.finished_at
    assert engine.stats().prefix_cache_hit_rate == 0.0
    assert engine.name == "null"


def test_answers_stop_at_max_tokens_and_long_prompts_are_refused() -> None:
    engine = NullEngine(EngineConfig(model_dir=Path("x"), max_model_len=8), output_tokens=4)
    requests = [_request("short", [5, 6], max_tokens=1), _request("long", list(range(8)), 4)]
    [outputs] = [step for step in engine.generate(OrderedFeed(requests)) if step]
    by_id = {o.request_id: o for o in outputs}
    assert (by_id["short"].output_token_ids, by_id["short"].finish_reason) == ([6], "length")
    assert by_id["long"].finish_reason == "error"
    assert "max_model_len 8" in (by_id["long"].error or "")


def test_output_tokens_must_be_positive() -> None:
    with pytest.raises(ValueError, match="output_tokens"):
        NullEngine(EngineConfig(model_dir=Path("x")), output_tokens=0)
