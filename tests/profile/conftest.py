"""Fixtures of the profile-stage tests: the tiny local model and in-memory DuckDB databases."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pyarrow as pa
import pytest

from blend.demo.model import ensure_tiny_model
from blend.engines.tokenize import load_tokenizer
from blend.store import sql


class ProfileDb:
    """In-memory databases with the project schema, and the profile queries run on them."""

    key: ClassVar[dict[str, Any]] = {"dataset": "ds", "snapshot": 1, "tokenizer_sha256": "tok"}

    def connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        for statement in sql.schema_statements():
            con.execute(statement)
        return con

    def insert(
        self,
        con: duckdb.DuckDBPyConnection,
        token_lists: Sequence[Sequence[int]],
        *,
        max_tokens: int = 16,
        ids: Sequence[str] | None = None,
        key: dict[str, Any] | None = None,
    ) -> None:
        """prompt_tokens rows r0, r1, ... (or `ids`) under `key`, and their prompts rows."""
        key = key or self.key
        ids = ids or [f"r{i}" for i in range(len(token_lists))]
        rows = pa.table(
            {
                "request_id": pa.array(ids, pa.string()),
                "token_ids": pa.array([list(t) for t in token_lists], pa.list_(pa.int32())),
            }
        )
        con.register("new_rows", rows)
        try:
            con.execute(
                "INSERT INTO prompt_tokens SELECT $dataset, $snapshot, request_id, "
                "$tokenizer_sha256, len(token_ids), token_ids FROM new_rows",
                key,
            )
            con.execute(
                # prompts has no key to ignore conflicts on (new stores): skip ids it has.
                "INSERT INTO prompts SELECT $dataset, $snapshot, request_id, 1, 'sha', "
                "'text', NULL, '{}', $max_tokens FROM new_rows WHERE request_id NOT IN "
                "(SELECT request_id FROM prompts "
                "WHERE dataset = $dataset AND snapshot = $snapshot)",
                {"dataset": key["dataset"], "snapshot": key["snapshot"], "max_tokens": max_tokens},
            )
        finally:
            con.unregister("new_rows")

    def query(
        self, con: duckdb.DuckDBPyConnection, name: str, **params: Any
    ) -> list[tuple[Any, ...]]:
        """Rows of sql/profile/<name>.sql under `key` plus `params`."""
        return con.sql(sql.load(f"profile/{name}"), params={**self.key, **params}).fetchall()


@pytest.fixture(scope="session")
def db() -> ProfileDb:
    return ProfileDb()


@pytest.fixture
def con(db: ProfileDb) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = db.connect()
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture(scope="session")
def profile_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny demo model (ChatML template, max_position_embeddings 1024), built once."""
    return ensure_tiny_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def profile_tokenizer(profile_model_dir: Path) -> Any:
    return load_tokenizer(profile_model_dir)
