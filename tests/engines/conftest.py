"""Fixtures for the engine tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread: the tiny demo model's GEMMs are too small to share, and on a busy
    CI machine the threads' spin-waits made a step several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
