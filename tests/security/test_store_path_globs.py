"""Glob characters in the store's path: the store reads its own results, never a sibling's.

The store path goes into DuckDB file patterns (the `results` view, a run's totals). Unescaped,
`gs/store*` also read `gs/storeB`'s results (its plan left out prompts only the sibling had
answered), and `gs/st[x]` read `gs/stx`'s instead of its own (queries and plans failed).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from blend.engines.base import EngineConfig
from blend.engines.tokenize import tokenizer_sha256
from blend.execute.stage import execute_plan
from blend.plan.stage import PlanOptions, plan_dataset
from blend.store.database import Store, StorePathError, fetch_dicts, glob_escape
from blend.store.lineage import model_sha256
from blend.store.query import run_query
from blend.store.results import ResultRow, run_dir, write_part
from tests.support.fake_engine import FakeEngine
from tests.support.seeds import PROMPTS, seed_store

# store folder name -> a sibling's name its unescaped pattern would match (or is matched for)
STORE_AND_SIBLING = {
    "store*": "storeB",
    "st[x]": "stx",
    "s{a,b}": "sa",
    "s[!x]*": "s[!x]y",
}

OPTIONS = PlanOptions(planner="dfs", warmup_fraction=0.0)


def answer_everything(store: Store, model: Path) -> int:
    """Seed dataset `ds`, plan it and run it with the fake engine; returns its rows."""
    seed_store(store, tokenizer_sha256(model))
    plan = plan_dataset(store, "ds", OPTIONS, model_dir=model)
    report = execute_plan(
        store, plan.plan_id, EngineConfig(model_dir=model), engine_factory=FakeEngine
    )
    return report.n_requests


def one_unrelated_part(store: Store, model: Path) -> None:
    """A result of another dataset, so that the store's `results` view has a part to glob."""
    now = datetime.now(UTC)
    row = ResultRow(
        dataset="other",
        snapshot=1,
        request_id="z",
        seq=0,
        prompt_sha256="sha-z",
        output_text="out",
        output_token_ids=[1],
        finish_reason="length",
        n_prompt_tokens=1,
        n_output_tokens=1,
        n_cached_tokens=0,
        error=None,
        run_id="r-other",
        plan_id="p-other",
        model=model.name,
        model_sha256=model_sha256(model),
        tokenizer_sha256=tokenizer_sha256(model),
        sampling_json='{"max_tokens": 3}',
        engine="fake",
        engine_version="0",
        started_at=now,
        finished_at=now,
    )
    write_part(run_dir(store.results_dir, "other", "r-other"), [row], {}, 0)


@pytest.mark.parametrize("name", STORE_AND_SIBLING)
def test_a_store_with_glob_characters_reads_only_its_own_results(
    name: str, tmp_path: Path, tiny_model: Path
) -> None:
    sibling = Store.open(tmp_path / "gs" / STORE_AND_SIBLING[name])
    assert answer_everything(sibling, tiny_model) == len(PROMPTS)
    store = Store.open(tmp_path / "gs" / name)
    assert store.root.name == name
    one_unrelated_part(store, tiny_model)
    seed_store(store, tokenizer_sha256(tiny_model))

    # incremental: the sibling's answers are not this store's
    plan = plan_dataset(
        store,
        "ds",
        OPTIONS,
        model_sha256=model_sha256(tiny_model),
        incremental=True,
        model_dir=tiny_model,
    )
    assert (plan.n_requests, plan.n_already_done) == (len(PROMPTS), 0)

    report = execute_plan(
        store, plan.plan_id, EngineConfig(model_dir=tiny_model), engine_factory=FakeEngine
    )
    assert report.n_requests == len(PROMPTS)  # the run's totals read its own parts
    with store.connect() as con:
        counted = fetch_dicts(con, "SELECT dataset, count(*) AS n FROM results GROUP BY ALL")
    assert sorted((r["dataset"], r["n"]) for r in counted) == [("ds", 5), ("other", 1)]
    # `blend query`: read-only, sandboxed to the store's results folder
    queried = run_query(store, "SELECT count(*) AS n FROM results").to_pylist()
    assert queried == [{"n": len(PROMPTS) + 1}]
    files = run_query(store, "SELECT DISTINCT file FROM result_files").column("file").to_pylist()
    assert files and all(Path(f).is_relative_to(store.results_dir) for f in files)


def test_glob_escape_matches_only_the_path_itself(tmp_path: Path) -> None:
    import duckdb

    for name in ["a*", "a?", "a[b]", "a[", "a]", "a{b,c}", "a**"]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "f.csv").write_text(f'x\n"{name}"\n')
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / "f.csv").write_text("x\nab\n")
    con = duckdb.connect()
    for name in ["a*", "a?", "a[b]", "a[", "a]", "a{b,c}", "a**"]:
        pattern = glob_escape(str(tmp_path / name)) + "/*.csv"
        rows = con.sql("SELECT x FROM read_csv($p, all_varchar = true)", params={"p": pattern})
        assert rows.fetchall() == [(name,)]


@pytest.mark.parametrize(("name", "said"), [("a\\b", "a backslash"), ("st?re", "a '?'")])
def test_a_store_path_duckdb_cannot_use_is_refused_before_anything_is_made(
    name: str, said: str, tmp_path: Path
) -> None:
    """A backslash is a folder separator to DuckDB's glob (`a\\b/results/**` reads `a/b`'s
    results); a `?` breaks the database's write-ahead log (the first commit failed)."""
    with pytest.raises(StorePathError, match=re.escape(f"contains {said}: ")):
        Store.open(tmp_path / name)
    assert not (tmp_path / name).exists()
