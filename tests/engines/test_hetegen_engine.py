"""The hetegen engine on the demo model, on the CPU: greedy tokens equal the unsplit model's,
waves respect the token and KV budgets, sampling fields are honoured, bad requests error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from blend.engines.base import EngineConfig, EngineOutput, EngineRequest
from blend.engines.feeds import OrderedFeed
from blend.engines.hetegen_engine import HeteGenEngine

torch = pytest.importorskip("torch")


def _run(engine: HeteGenEngine, requests: list[EngineRequest]) -> dict[str, EngineOutput]:
    outputs: dict[str, EngineOutput] = {}
    for finished in engine.generate(OrderedFeed(requests)):
        state = engine.state()
        assert state.kv_blocks_used <= state.kv_blocks_total
        assert state.num_running <= engine.settings.max_num_seqs
        for output in finished:
            assert output.request_id not in outputs
            outputs[output.request_id] = output
    return outputs


def _greedy(request_id: str, prompt: list[int], max_tokens: int) -> EngineRequest:
    return EngineRequest(request_id, prompt, {"max_tokens": max_tokens, "temperature": 0.0})


@pytest.fixture(scope="module")
def reference(tiny_model: Path) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    return model.eval()


@pytest.mark.usefixtures("one_torch_thread")
def test_greedy_outputs_equal_the_unsplit_models_generate(tiny_model: Path, reference: Any) -> None:
    engine = HeteGenEngine(EngineConfig(model_dir=tiny_model, max_num_seqs=3))
    try:
        placement = engine.params["hetegen_placement"]
        assert placement["offloaded_layers"] > 0 and placement["resident_layers"] > 0
        requests = [
            _greedy(f"r{i}", [(7 * i + j) % 1500 + 10 for j in range(3 + 5 * i)], 3 + 2 * i)
            for i in range(5)
        ]
        outputs = _run(engine, requests)
    finally:
        engine.close()
    assert set(outputs) == {r.request_id for r in requests}
    for request in requests:
        prompt = torch.tensor([request.prompt_token_ids])
        expected = reference.generate(
            prompt, max_new_tokens=request.sampling["max_tokens"], do_sample=False
        )[0, prompt.shape[1] :].tolist()
        output = outputs[request.request_id]
        # the reference stops at end-of-sequence too; the engine then reports "stop"
        assert output.output_token_ids == expected, request.request_id
        assert output.finish_reason in ("length", "stop")
        assert output.n_prompt_tokens == len(request.prompt_token_ids)
        assert output.output_text is not None


@pytest.mark.usefixtures("one_torch_thread")
def test_waves_stay_within_the_kv_cache_and_refuse_what_never_fits(tiny_model: Path) -> None:
    # the demo model's KV: 2 layers x 2 heads x 32 x 2 (K, V) x 4 bytes = 1 KiB a token
    config = EngineConfig(model_dir=tiny_model, max_num_seqs=8, kv_cache_gib=40 * 2**10 / 2**30)
    engine = HeteGenEngine(config)
    try:
        assert engine.params["kv_capacity_tokens"] == 40
        requests = [_greedy(f"r{i}", [20 + i] * 8, 4) for i in range(5)]  # 12 tokens each
        requests.append(_greedy("huge", [30] * 30, 20))  # 50 tokens: never fits
        requests.append(EngineRequest("empty", [], {"max_tokens": 2}))
        running: list[int] = []
        outputs: dict[str, EngineOutput] = {}
        for finished in engine.generate(OrderedFeed(requests)):
            running.append(engine.state().num_running)
            outputs |= {o.request_id: o for o in finished}
    finally:
        engine.close()
    assert max(running) <= 3  # 3 x 12 tokens fit in 40, 4 do not
    assert outputs["huge"].finish_reason == "error" and "KV cache" in (outputs["huge"].error or "")
    assert outputs["empty"].finish_reason == "error"
    assert all(outputs[f"r{i}"].n_output_tokens == 4 for i in range(5))


@pytest.mark.usefixtures("one_torch_thread")
def test_seeded_sampling_repeats_and_stop_strings_cut_the_text(tiny_model: Path) -> None:
    engine = HeteGenEngine(EngineConfig(model_dir=tiny_model, max_num_seqs=4))
    try:
        sampled = {"max_tokens": 12, "temperature": 0.9, "top_p": 0.9, "top_k": 50, "seed": 7}
        penalised = {"max_tokens": 12, "temperature": 0.0, "repetition_penalty": 1.5}
        first = _run(
            engine,
            [
                EngineRequest("a", [11, 12, 13], sampled),
                EngineRequest("b", [11, 12, 13], sampled),
                EngineRequest("p", [11, 12, 13], penalised),
                _greedy("g", [11, 12, 13], 12),
            ],
        )
        text = first["g"].output_text or ""
        stop = text[len(text) // 2 : len(text) // 2 + 2] if len(text) > 3 else text
        stopped = _run(
            engine,
            [
                EngineRequest(
                    "s", [11, 12, 13], {"max_tokens": 12, "temperature": 0.0, "stop": [stop]}
                )
            ],
        )["s"]
    finally:
        engine.close()
    assert first["a"].output_token_ids == first["b"].output_token_ids  # same seed, same tokens
    assert first["p"].output_token_ids != first["g"].output_token_ids  # the penalty acts
    assert stopped.finish_reason == "stop"
    assert stop not in (stopped.output_text or "") and text.startswith(stopped.output_text or "")
