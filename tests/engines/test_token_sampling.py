"""The hetegen engine's next-token choice on made-up logits: vLLM's meaning of each field."""

from __future__ import annotations

import pytest

from blend.engines.token_sampling import TokenSampler

torch = pytest.importorskip("torch")
EOS = frozenset({0})


def _logits(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_greedy_penalties_and_min_tokens_change_the_argmax() -> None:
    logits = _logits(5.0, 4.0, 3.9, 1.0)
    plain = TokenSampler.from_sampling({"max_tokens": 4, "temperature": 0}, [9], 100)
    assert plain.plain and plain.choose(logits, 0, EOS, None) == 0
    late = TokenSampler.from_sampling({"max_tokens": 4, "temperature": 0, "min_tokens": 2}, [9], 99)
    assert not late.plain
    assert late.choose(logits, 1, EOS, None) == 1  # end-of-sequence masked before min_tokens
    assert late.choose(logits, 2, EOS, None) == 0
    repeated = TokenSampler.from_sampling(
        {"max_tokens": 4, "temperature": 0, "frequency_penalty": 0.1}, [9], 100
    )
    repeated.record(1)
    repeated.record(1)
    assert repeated.choose(_logits(0.0, 4.0, 3.9), 2, EOS, None) == 2  # 4.0 - 0.2 < 3.9
    present = TokenSampler.from_sampling(
        {"max_tokens": 4, "temperature": 0, "presence_penalty": 0.05}, [9], 100
    )
    present.record(1)
    assert present.choose(_logits(0.0, 4.0, 3.9), 1, EOS, None) == 1  # 4.0 - 0.05 > 3.9
    prompt_seen = TokenSampler.from_sampling(
        {"max_tokens": 4, "temperature": 0, "repetition_penalty": 2.0}, [1], 100
    )
    assert prompt_seen.choose(_logits(0.0, 4.0, 3.9), 0, EOS, None) == 2  # 4.0 / 2 < 3.9


def test_top_k_and_top_p_restrict_the_draw() -> None:
    logits = _logits(3.0, 2.9, 0.0, -1.0)
    generator = torch.Generator().manual_seed(0)
    top_k = TokenSampler.from_sampling({"max_tokens": 1, "top_k": 2}, [9], 100)
    top_p = TokenSampler.from_sampling({"max_tokens": 1, "top_p": 0.5}, [9], 100)
    assert {top_k.choose(logits, 0, frozenset(), generator) for _ in range(50)} <= {0, 1}
    assert {top_p.choose(logits, 0, frozenset(), generator) for _ in range(50)} == {0}


def test_max_tokens_is_capped_by_the_context_and_n_is_refused() -> None:
    assert TokenSampler.from_sampling({"max_tokens": 50}, [1, 2], 10).max_tokens == 10
    assert TokenSampler.from_sampling({}, [1], 100).temperature == 1.0  # vLLM's default
    with pytest.raises(ValueError, match="n=2"):
        TokenSampler.from_sampling({"max_tokens": 5, "n": 2}, [1], 100)
    with pytest.raises(ValueError, match="unknown sampling fields"):
        TokenSampler.from_sampling({"logprobs": 3}, [1], 100)
