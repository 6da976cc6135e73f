"""The earlier answers every length-hint query reads (sql/macros/recent_answers.sql), through
plan/history_lengths.sql: newest one a prompt, only with token ids, ties cut the same way; and
both shared macros on the connections that have them, after a real run."""

from __future__ import annotations

import functools
import random
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from blend.cli import app
from blend.engines.base import EngineConfig
from blend.engines.tokenize import tokenizer_sha256
from blend.execute.stage import execute_plan
from blend.plan.stage import PlanOptions, plan_dataset
from blend.store import sql
from blend.store.database import Store, connect_read_only
from tests.support.fake_engine import FakeEngine
from tests.support.seeds import seed_store

T0 = datetime(2026, 12, 1)


def _con(answers: list[tuple], tokens: list[tuple]) -> duckdb.DuckDBPyConnection:
    """A database with just the columns the macro reads, rows inserted in the given order."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE results (dataset VARCHAR, snapshot INTEGER, request_id VARCHAR, "
        "prompt_sha256 VARCHAR, sampling_json VARCHAR, n_output_tokens INTEGER, "
        "finished_at TIMESTAMP, model_sha256 VARCHAR, error VARCHAR)"
    )
    con.execute(
        "CREATE TABLE prompt_tokens (dataset VARCHAR, snapshot INTEGER, request_id VARCHAR, "
        "tokenizer_sha256 VARCHAR, token_ids INTEGER[])"
    )
    con.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", answers)
    con.executemany("INSERT INTO prompt_tokens VALUES (?, ?, ?, ?, ?)", tokens)
    con.execute(sql.load("macros/recent_answers"))
    return con


def _lengths(con: duckdb.DuckDBPyConnection, limit: int) -> list[tuple[str, int]]:
    rows = con.execute(
        sql.load("plan/history_lengths"),
        {"dataset": "d", "model_sha256": "m", "tokenizer_sha256": "tok", "limit": limit},
    ).fetchall()
    return [(prompt, n) for prompt, _sampling, n, _ids in rows]


def test_newest_answer_of_a_prompt_with_its_tokens_only() -> None:
    answers = [
        ("d", 1, "a", "p1", "{}", 10, T0, "m", None),
        ("d", 2, "b", "p1", "{}", 20, T0 + timedelta(hours=1), "m", None),  # newer: wins
        ("d", 2, "c", "p2", "{}", 30, T0 + timedelta(hours=2), "m", "boom"),  # an error
        ("d", 2, "e", "p3", "{}", 40, T0 + timedelta(hours=3), "other", None),  # another model
        ("x", 2, "f", "p4", "{}", 50, T0 + timedelta(hours=4), "m", None),  # another dataset
        ("d", 2, "g", "p5", "{}", 60, T0 + timedelta(hours=5), "m", None),  # no tokens
        ("d", 2, "h", "p6", "{}", 70, T0 + timedelta(minutes=30), "m", None),
    ]
    tokens = [
        ("d", 1, "a", "tok", [1, 2]),
        ("d", 2, "b", "tok", [1, 2]),
        ("d", 2, "c", "tok", [3]),
        ("d", 2, "e", "tok", [4]),
        ("x", 2, "f", "tok", [5]),
        ("d", 2, "g", "other-tokenizer", [6]),
        ("d", 2, "h", "tok", [7]),
    ]
    con = _con(answers, tokens)
    assert _lengths(con, 10) == [("p1", 20), ("p6", 70)]
    # the answer without token ids takes no place under the limit
    assert _lengths(con, 1) == [("p1", 20)]


def test_a_limit_inside_a_tie_of_finish_times_picks_the_same_rows_every_time() -> None:
    # one engine step's answers share their finish time; the limit cuts through them
    answers = [
        ("d", 1, f"r{i}", f"p{i:03d}", "{}", i, T0 + timedelta(seconds=i // 50), "m", None)
        for i in range(200)
    ]
    tokens = [("d", 1, f"r{i}", "tok", [i]) for i in range(200)]
    picks = set()
    for seed in range(4):
        order = random.Random(seed)
        shuffled_answers, shuffled_tokens = answers[:], tokens[:]
        order.shuffle(shuffled_answers)
        order.shuffle(shuffled_tokens)
        picks.add(tuple(_lengths(_con(shuffled_answers, shuffled_tokens), 70)))
    assert len(picks) == 1
    (picked,) = picks
    # the newest second's 50 answers, then 20 of the next by prompt hash
    assert [n for _, n in picked] == list(range(150, 200)) + list(range(100, 120))


def test_both_macros_on_a_store_after_a_run(store: Store, tiny_model: Path) -> None:
    tokenizer = tokenizer_sha256(tiny_model)
    seed_store(store, tokenizer)  # a, b, c, d and "long" (longer than the context: an error)
    options = PlanOptions(planner="dfs", warmup_fraction=0.0)
    plan = plan_dataset(store, "ds", options, model_dir=tiny_model)
    execute_plan(store, plan.plan_id, EngineConfig(model_dir=tiny_model), engine_factory=FakeEngine)

    # a stage's connection, and the read-only one of capacity and export, have them
    for connect in (store.connect, functools.partial(connect_read_only, store)):
        with connect() as con:
            model = con.execute("SELECT any_value(model_sha256) FROM results").fetchall()[0][0]
            answers = con.execute(
                "SELECT prompt_sha256 FROM recent_answers('ds', ?, ?, 100)", [model, tokenizer]
            ).fetchall()
            completed = con.execute(
                "SELECT prompt_sha256 FROM results WHERE error IS NULL"
            ).fetchall()
            assert sorted(answers) == sorted(completed) and len(answers) == 4  # no error row

            def runnable(done_model: str | None) -> list[str]:
                rows = con.execute(
                    "SELECT request_id FROM runnable_requests('ds', 1, ?, ?, 64) "
                    "ORDER BY request_id",
                    [tokenizer, done_model],
                ).fetchall()
                return [r[0] for r in rows]

            assert runnable(None) == ["a", "b", "c", "d"]  # "long" does not fit the context
            assert runnable(model) == []  # all done by that model

    # `blend query` starts its session without them (binding them reads every part again)
    args = ["query", "SELECT * FROM recent_answers('ds', 'm', 't', 1)", "--store", str(store.root)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "recent_answers()" in result.output
