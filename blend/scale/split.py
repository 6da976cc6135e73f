"""How a plan's sequence is cut into one share per engine (until a planner-side split exists).

A split returns, per engine, positions into the sequence; together they must cover every
position exactly once (checked by `check_split`, whatever split is used).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from blend.admission.dual_scan import ScanSequence
from blend.cost import CostModel

EngineSplit = Callable[[ScanSequence, CostModel, int], list[np.ndarray]]


def contiguous_split(sequence: ScanSequence, cost: CostModel, k: int) -> list[np.ndarray]:
    """K contiguous runs of the sequence with about equal token work each (unshared prompt
    tokens + estimated output tokens): contiguous runs keep a depth-first order's prefix
    sharing inside one engine's cache. `cost` is unused (tokens stand in for time)."""
    del cost
    if k < 1:
        raise ValueError(f"engines must be >= 1, got {k}")
    work = np.maximum(sequence.prompt_tokens - sequence.shared_prev, 0) + sequence.output_tokens
    work = np.maximum(work, 1.0)  # every request costs something (a step at least)
    cumulative = np.cumsum(work)
    total = cumulative[-1] if len(cumulative) else 0.0
    cuts = np.searchsorted(cumulative, total * np.arange(1, k) / k, side="right")
    positions = np.arange(len(work))
    return [np.asarray(part, dtype=np.int64) for part in np.split(positions, cuts)]


def check_split(shares: list[np.ndarray], n: int, k: int) -> None:
    """Refuse a split that is not K shares covering positions 0..n-1 once each."""
    if len(shares) != k:
        raise ValueError(f"the engine split returned {len(shares)} shares for {k} engines")
    counts = np.bincount(np.concatenate([*shares, np.zeros(0, np.int64)]), minlength=n)
    if len(counts) != n or (counts != 1).any():
        raise ValueError(
            f"the engine split must cover each of the {n} positions exactly once "
            f"({int((counts == 0).sum())} missed, {int((counts > 1).sum())} repeated, "
            f"{max(0, len(counts) - n)} out of range)"
        )
