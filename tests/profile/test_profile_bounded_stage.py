"""profile_dataset in bounded memory: its prefix numbers equal the reference SQL on the stored
token rows, DuckDB is capped during the stage and restored after it, and the request classes
without earlier results equal those of the planner's estimates without reading token ids."""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import numpy as np
import pytest

from blend.control import class_store
from blend.demo.model import CORPUS_PATH
from blend.profile import stage as profile_stage
from blend.profile import token_order
from blend.profile.stage import profile_dataset
from blend.store import sql
from blend.store.database import Store, fetch_dicts
from blend.store.memory import memory_capped

WORDS = CORPUS_PATH.read_text(encoding="utf-8").split()


def few_shot_rows(n: int, seed: int = 0) -> list[tuple[str, str | None, str | None, int]]:
    """(request_id, prompt, messages_json, max_tokens): a few templates shared by many
    prompts, unique questions, one row in five a chat with the template as its system."""
    rng = random.Random(seed)
    templates = [" ".join(rng.choices(WORDS, k=rng.randint(60, 160))) for _ in range(6)]
    rows = []
    for i in range(n):
        template = rng.choice(templates)
        question = " ".join(rng.choices(WORDS, k=rng.randint(3, 25)))
        max_tokens = rng.choice([16, 64, 256, 512])
        if i % 5 == 4:
            messages = [
                {"role": "system", "content": template},
                {"role": "user", "content": question},
            ]
            rows.append((f"q{i:04d}", None, json.dumps(messages), max_tokens))
        else:
            rows.append((f"q{i:04d}", f"{template}\nQ: {question}\nA:", None, max_tokens))
    return rows


def insert_prompts(store: Store, rows, dataset: str = "shots") -> None:
    with store.connect() as con:
        con.executemany(
            "INSERT INTO prompts VALUES (?, 1, ?, ?, 'sha', ?, ?, '{}', ?)",
            [(dataset, rid, line, p, m, mt) for line, (rid, p, m, mt) in enumerate(rows, 1)],
        )


@pytest.fixture
def shots_store(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "store")
    insert_prompts(store, few_shot_rows(400))
    return store


def test_profile_numbers_equal_the_reference_sql(shots_store, profile_model_dir, monkeypatch):
    """Tiny ranges: the stage's sorted stream is cut into many ranges."""
    monkeypatch.setattr(token_order, "RANGE_TOKENS", 4_000)
    report = profile_dataset(shots_store, "shots", profile_model_dir, min_shared_tokens=32)
    params = report.key.params()
    with shots_store.connect() as con:
        [sharing] = fetch_dicts(con, sql.load("profile/prefix_sharing"), params)
        groups = fetch_dicts(
            con,
            sql.load("profile/prefix_groups"),
            {**params, "min_shared_tokens": 32, "top_n": 10},
        )
    assert report.input_tokens > 8 * 4_000
    assert report.unique_prefix_tokens == sharing["unique_prefix_tokens"]
    assert report.sharing_ratio == sharing["sharing_ratio"]
    assert report.n_prefix_groups == groups[0]["n_groups"] >= 6
    assert [
        (g.rank, g.n_prompts, g.shared_prefix_tokens, g.saved_tokens, g.first_request_id)
        for g in report.top_groups
    ] == [
        (
            g["group_rank"],
            g["n_prompts"],
            g["shared_prefix_tokens"],
            g["saved_tokens"],
            g["first_request_id"],
        )
        for g in groups
    ]
    assert not list(shots_store.tmp_dir.iterdir())  # scratch files removed


def test_duckdb_is_capped_during_the_profile_and_restored_after(
    shots_store, profile_model_dir, monkeypatch
):
    seen = []
    real = profile_stage._measure

    def measure(con, *args):
        seen.append(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        return real(con, *args)

    monkeypatch.setattr(profile_stage, "_measure", measure)
    with shots_store.connect() as con:
        default = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    profile_dataset(shots_store, "shots", profile_model_dir)
    assert seen == ["1.0 GiB"]
    with shots_store.connect() as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == default


def test_memory_capped_restores_a_setting_that_was_not_the_default():
    con = duckdb.connect()
    con.execute("SET memory_limit = '2GiB'")  # reads back as "2.0 GiB", exactly
    before = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    with memory_capped(con, 256 << 20):
        assert con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == (
            "256.0 MiB"
        )
    assert con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == before


def test_memory_capped_can_return_freed_pages_for_the_block():
    """return_freed turns DuckDB's allocator background threads on for the block only."""
    con = duckdb.connect()
    setting = "SELECT current_setting('allocator_background_threads')"
    with memory_capped(con, 256 << 20, return_freed=True):
        assert con.execute(setting).fetchall()[0][0] is True
    assert con.execute(setting).fetchall()[0][0] is False
    with memory_capped(con, 256 << 20):
        assert con.execute(setting).fetchall()[0][0] is False


def test_classes_without_history_equal_the_estimated_ones(shots_store, profile_model_dir):
    """No earlier results: the classes on (prompt tokens, max_tokens) equal those the
    planner's estimates give (every estimate is max_tokens), labels included."""
    report = profile_dataset(shots_store, "shots", profile_model_dir)
    params = report.key.params()
    with shots_store.connect() as con:
        fast = class_store.classes_without_history(con, params)
        full = class_store.classes_from_estimates(con, params, report.max_model_len, [])
        stored = class_store.read_classes(con, params)
    assert len(fast.classes) >= 2
    assert fast.classes == full.classes == stored == report.request_classes
    np.testing.assert_array_equal(fast.labels, full.labels)


def test_the_profile_reads_no_token_ids_for_classes_without_history(
    shots_store, profile_model_dir, monkeypatch
):
    def refuse(*args, **kwargs):
        raise AssertionError("the token ids were read for the request classes")

    monkeypatch.setattr(class_store, "classes_from_estimates", refuse)
    report = profile_dataset(shots_store, "shots", profile_model_dir, model_sha256="m" * 64)
    assert report.request_classes
