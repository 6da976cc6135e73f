"""The real vLLM CPU engine honours each request's sampling parameters and seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from blend.engines.base import EngineConfig, EngineOutput, EngineRequest
from blend.engines.feeds import OrderedFeed

pytestmark = pytest.mark.engine

PROMPT = [11, 52, 301, 77, 940, 5, 18, 1200, 64, 33]


def request(rid: str, **sampling: object) -> EngineRequest:
    return EngineRequest(request_id=rid, prompt_token_ids=PROMPT, sampling=dict(sampling))


def run(engine, requests: list[EngineRequest]) -> dict[str, EngineOutput]:
    return {o.request_id: o for step in engine.generate(OrderedFeed(requests)) for o in step}


def test_seeds_and_budgets_are_honoured(tiny_model: Path) -> None:
    from blend.engines.vllm_engine import VllmEngine

    engine = VllmEngine(EngineConfig(model_dir=tiny_model, max_num_seqs=4))
    try:
        hot = {"temperature": 1.0, "max_tokens": 8, "min_tokens": 8}
        batch = [
            request("s1", seed=1, **hot),
            request("s1-again", seed=1, **hot),
            request("s2", seed=2, **hot),
            request("greedy", temperature=0.0, max_tokens=3, min_tokens=3),
        ]
        first = run(engine, batch)
        second = run(engine, [request(f"{r.request_id}-run2", **r.sampling) for r in batch])
        assert engine.busy_seconds > 0
    finally:
        engine.close()
    tokens = {rid: o.output_token_ids for rid, o in first.items()}
    assert all(o.error is None for o in [*first.values(), *second.values()])
    assert len(tokens["s1"]) == len(tokens["s2"]) == 8
    assert len(tokens["greedy"]) == 3
    assert tokens["s1"] == tokens["s1-again"]  # same seed in one batch
    assert tokens["s1"] != tokens["s2"]  # different seeds
    for rid, output in first.items():  # same seed, another run: identical
        assert second[f"{rid}-run2"].output_token_ids == output.output_token_ids
