"""Next-token choice for the HeteGen engine, with vLLM's meaning of the sampling fields.

Honoured: max_tokens, min_tokens (end-of-sequence ids masked before it), temperature (0:
greedy; None: 1.0 as in vLLM), top_p, top_k (None, 0 or -1: off), seed (a generator of the
request's own; else the engine's), presence / frequency penalties (over the output tokens) and
repetition_penalty (over prompt and output tokens, as vLLM applies it), stop strings (checked
on the decoded text; the text is cut before the stop string, as vLLM does by default).
Not supported: n > 1 (ingest refuses it already), logprobs, stop_token_ids, ignore_eos.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from blend.engines.sampling_fields import SAMPLING_FIELDS


@dataclass(slots=True)
class TokenSampler:
    """One request's sampling settings and the state they need between steps."""

    max_tokens: int
    min_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    generator: torch.Generator | None = None
    output_counts: Counter[int] = field(default_factory=Counter)
    prompt_tokens: frozenset[int] = frozenset()

    @classmethod
    def from_sampling(
        cls, sampling: Mapping[str, Any], prompt_token_ids: list[int], max_new: int
    ) -> TokenSampler:
        """Settings of a request's sampling dict; `max_new` caps max_tokens (the model's
        context left after the prompt). Raises ValueError for what is not supported."""
        unknown = set(sampling) - SAMPLING_FIELDS
        if unknown:
            raise ValueError(f"unknown sampling fields: {sorted(unknown)}")
        if (sampling.get("n") or 1) != 1:
            raise ValueError(f"n={sampling['n']}: the hetegen engine returns one completion")
        temperature = sampling.get("temperature")
        seed = sampling.get("seed")
        generator = None
        if seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        return cls(
            max_tokens=min(int(sampling.get("max_tokens") or 16), max_new),
            min_tokens=int(sampling.get("min_tokens") or 0),
            temperature=1.0 if temperature is None else float(temperature),
            top_p=float(sampling.get("top_p") or 1.0),
            top_k=max(0, int(sampling.get("top_k") or 0)),
            presence_penalty=float(sampling.get("presence_penalty") or 0.0),
            frequency_penalty=float(sampling.get("frequency_penalty") or 0.0),
            repetition_penalty=float(sampling.get("repetition_penalty") or 1.0),
            stop=tuple(sampling.get("stop") or ()),
            generator=generator,
            prompt_tokens=frozenset(prompt_token_ids),
        )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def plain(self) -> bool:
        """Greedy with nothing that changes the logits: a batch argmax decides."""
        return (
            self.greedy
            and self.min_tokens == 0
            and self.presence_penalty == 0.0
            and self.frequency_penalty == 0.0
            and self.repetition_penalty == 1.0
        )

    def choose(
        self, logits: torch.Tensor, n_generated: int, eos_ids: frozenset[int], fallback: Any
    ) -> int:
        """The next token from one row of logits [vocab] (float32, on the CPU)."""
        logits = self._penalised(logits.clone())
        if n_generated < self.min_tokens:
            for eos in eos_ids:
                logits[eos] = float("-inf")
        if self.greedy:
            return int(torch.argmax(logits))
        logits = logits / self.temperature
        if self.top_k and self.top_k < logits.numel():
            kth = torch.topk(logits, self.top_k).values[-1]
            logits[logits < kth] = float("-inf")
        probs = torch.softmax(logits, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
            sorted_probs[before >= self.top_p] = 0.0  # keep the smallest set reaching top_p
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        generator = self.generator if self.generator is not None else fallback
        return int(torch.multinomial(probs, 1, generator=generator))

    def _penalised(self, logits: torch.Tensor) -> torch.Tensor:
        if self.repetition_penalty != 1.0:
            seen = torch.tensor(sorted(self.prompt_tokens | set(self.output_counts)))
            if seen.numel():
                values = logits[seen]
                logits[seen] = torch.where(
                    values > 0, values / self.repetition_penalty, values * self.repetition_penalty
                )
        if self.output_counts and (self.presence_penalty or self.frequency_penalty):
            ids = torch.tensor(list(self.output_counts))
            counts = torch.tensor(list(self.output_counts.values()), dtype=logits.dtype)
            logits[ids] -= self.frequency_penalty * counts + self.presence_penalty
        return logits

    def record(self, token: int) -> None:
        self.output_counts[token] += 1

    def stop_cut(self, text: str) -> int | None:
        """Where a stop string starts in the text so far (None: no stop string in it)."""
        cuts = [i for i in (text.find(s) for s in self.stop if s) if i >= 0]
        return min(cuts) if cuts else None
