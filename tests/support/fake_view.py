"""An engine view with numbers set by hand, for admission policies' unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FakeView:
    """admission.base.EngineView with every number set by the test."""

    step: int = 0
    num_running: int = 0
    num_waiting: int = 0
    kv_blocks_used: int = 0
    kv_blocks_total: int = 1000
    block_size: int = 1
    finished: list[tuple[int, int]] = field(default_factory=list)
    generated: dict[int, int] = field(default_factory=dict)

    def generated_of(self, indices: np.ndarray) -> np.ndarray:
        return np.array([self.generated.get(int(i), 0) for i in indices], dtype=np.int64)
