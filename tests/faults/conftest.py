"""Fault-test fixtures: child processes (tests/support/fault_child.py) to run beside a test
or kill."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blend.demo.dataset import DemoSize, write_demo_dataset
from tests.support.children import Child


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    """Start children with `spawn(*args)`; any still running at the end is killed."""
    started: list[Child] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Child:
        started.append(Child(*args, env=env))
        return started[-1]

    yield start
    for child in started:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait()


@pytest.fixture
def small_inputs(tmp_path: Path) -> list[Path]:
    """Two different small demo inputs (~34 valid prompts each, shared prefixes)."""
    return [
        write_demo_dataset(tmp_path / f"input-{seed}.jsonl", DemoSize.small(), seed=seed)
        for seed in (1, 2)
    ]
