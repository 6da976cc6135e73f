"""Fixtures for the attack tests: a store with a dataset and a result part."""

from __future__ import annotations

from pathlib import Path

import pytest

from blend.ingest import ingest_file
from blend.store.database import Store
from blend.store.results import run_dir, write_part
from tests.support.attacks import DATASET, RUN_ID, result_row, write_jsonl


@pytest.fixture
def filled_store(tmp_path: Path) -> Store:
    """A store with dataset `d` (2 prompts) and one result part of run RUN_ID."""
    store = Store.open(tmp_path / "store")
    source = write_jsonl(
        tmp_path / "in.jsonl",
        [{"id": "a", "prompt": "hello"}, {"id": "b", "prompt": "world"}],
    )
    ingest_file(store, source, DATASET)
    write_part(run_dir(store.results_dir, DATASET, RUN_ID), [result_row("a")], {}, 0)
    return store
