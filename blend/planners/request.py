"""What a planner may know of one request, and where a known output length comes from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class EstimateSource(StrEnum):
    OWN = "own"  # the request's own earlier result (same prompt, model and sampling)
    ORACLE = "oracle"  # the true length (simulation only)
    WARMUP = "warmup"  # mean of warm-up results in its nearest measured prefix subtree
    HISTORY = "history"  # mean of earlier results (same model and sampling), same rule
    MAX_TOKENS = "max_tokens"  # nothing measured: the request's output limit


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """One request to order: its prompt, its output limit, and its length where known."""

    request_id: str
    prompt_token_ids: Sequence[int] | np.ndarray  # token ids (an int array is kept as is)
    max_tokens: int  # output token limit (an upper bound on the output length)
    # the request's own output length (tokens) where the planner may know it: an earlier
    # result of the same prompt, model and sampling (OWN), or the true length in an oracle
    # simulation (ORACLE); None when unknown
    output_len: int | None = None
    known_from: EstimateSource | None = None  # where output_len comes from (default ORACLE)

    @property
    def length_source(self) -> EstimateSource:
        return self.known_from or EstimateSource.ORACLE
