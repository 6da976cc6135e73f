"""The shape of an engine split, and the check every split's answer passes.

A split returns, per engine, positions into the sequence; together they must cover every
position exactly once. The default is BlendServe's data-parallel split
(blend/scale/engine_split.py); tests pass simpler ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from blend.admission.dual_scan import ScanSequence
from blend.cost.model import CostModel
from blend.scale.engine_split import split_for_engines

EngineSplit = Callable[[ScanSequence, CostModel, int], list[np.ndarray]]

DEFAULT_SPLIT: EngineSplit = split_for_engines


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
