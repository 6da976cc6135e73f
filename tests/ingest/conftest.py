"""Fixtures of the ingest tests: a fresh store per test and small file / query helpers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from blend.store.database import Store

Query = Callable[..., list[tuple[Any, ...]]]
WriteLines = Callable[..., Path]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store")


@pytest.fixture
def query(store: Store) -> Query:
    """query(sql, params=None) -> all rows, on a connection opened for the call."""

    def run(statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with store.connect() as con:
            return con.execute(statement, params).fetchall()

    return run


@pytest.fixture
def write_lines(tmp_path: Path) -> WriteLines:
    """write_lines(name, lines) -> path: each line (str or bytes) written with a "\\n" after it."""

    def write(name: str, lines: list[str | bytes]) -> Path:
        path = tmp_path / name
        data = b"".join((x.encode() if isinstance(x, str) else x) + b"\n" for x in lines)
        path.write_bytes(data)
        return path

    return write
