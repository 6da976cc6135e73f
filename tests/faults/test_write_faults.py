"""Faults while writing: SIGKILL during profile and during a Parquet part write, and a disk
that fills mid-write. A re-run ends in the state of an uninterrupted run; no partial file is
ever left in a run folder."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import blend.store.results as results
from blend.engines.base import EngineConfig
from blend.execute.stage import ExecuteOptions, execute_plan
from blend.ingest import ingest_file
from blend.plan.stage import PlanOptions, plan_dataset
from blend.profile.stage import ProfileReport, profile_dataset
from blend.store.database import Store, fetch_dicts
from blend.store.results import ResultWriteError
from tests.support.children import Child
from tests.support.fake_engine import FakeEngine

PROFILE_TABLES = {
    "prompt_tokens": "SELECT request_id, tokenizer_sha256, n_prompt_tokens, token_ids "
    "FROM prompt_tokens ORDER BY request_id",
    "profiles": "SELECT dataset, snapshot, tokenizer_sha256, model, max_model_len, n_prompts, "
    "input_tokens, n_over_length, unique_prefix_tokens FROM profiles",
}
RESULT_COLUMNS = "request_id, seq, output_text, output_token_ids, finish_reason, error"


def table_rows(store: Store, queries: dict[str, str]) -> dict[str, list[dict]]:
    with store.connect() as con:
        return {name: fetch_dicts(con, query) for name, query in queries.items()}


def planned(store: Store, input_path: Path, model: Path) -> tuple[str, ProfileReport]:
    ingest_file(store, input_path, "d")
    profile = profile_dataset(store, "d", model)
    options = PlanOptions(planner="dfs", warmup_fraction=0.0)
    return plan_dataset(store, "d", options, model_dir=model).plan_id, profile


def execute(store: Store, plan_id: str, model: Path, max_model_len: int, run_id: str) -> Any:
    return execute_plan(
        store,
        plan_id,
        EngineConfig(model_dir=model),
        run_id=run_id,
        options=ExecuteOptions(flush_rows=2),
        engine_factory=lambda c: FakeEngine(c, max_model_len=max_model_len),
    )


def run_rows(store: Store, run_id: str) -> list[dict]:
    with store.connect() as con:
        return fetch_dicts(
            con,
            f"SELECT {RESULT_COLUMNS} FROM results WHERE run_id = $r ORDER BY seq",
            {"r": run_id},
        )


def test_killed_profile_reruns_to_the_same_tables(
    spawn: Callable[..., Child], tmp_path: Path, tiny_model: Path, small_inputs: list[Path]
) -> None:
    store = Store.open(tmp_path / "store")
    ingest_file(store, small_inputs[0], "d")
    child = spawn(
        "profile", "--store", str(store.root), "--dataset", "d", "--model", str(tiny_model)
    )
    child.wait_for("progress")  # inside its transaction: some prompts tokenized, not all
    child.kill()
    assert table_rows(store, PROFILE_TABLES) == {"prompt_tokens": [], "profiles": []}
    profile_dataset(store, "d", tiny_model)
    fresh = Store.open(tmp_path / "fresh")
    ingest_file(fresh, small_inputs[0], "d")
    profile_dataset(fresh, "d", tiny_model)
    rerun, uninterrupted = table_rows(store, PROFILE_TABLES), table_rows(fresh, PROFILE_TABLES)
    assert len(rerun["prompt_tokens"]) == 34
    assert rerun == uninterrupted


def test_a_second_profile_replaces_its_rows(
    tmp_path: Path, tiny_model: Path, small_inputs: list[Path]
) -> None:
    # prompt_tokens has no primary key (its index could not spill at 10M prompts): the stage
    # alone keeps one row per prompt, by deleting the key's rows before it inserts
    store = Store.open(tmp_path / "store")
    ingest_file(store, small_inputs[0], "d")
    first = profile_dataset(store, "d", tiny_model)
    once = table_rows(store, PROFILE_TABLES)
    profile_dataset(store, "d", tiny_model)
    assert table_rows(store, PROFILE_TABLES) == once
    assert len(once["prompt_tokens"]) == first.n_prompts == 34


def test_killed_part_write_leaves_no_part_and_resumes_to_the_same_rows(
    spawn: Callable[..., Child], tmp_path: Path, tiny_model: Path, small_inputs: list[Path]
) -> None:
    store = Store.open(tmp_path / "store")
    plan_id, profile = planned(store, small_inputs[0], tiny_model)
    child = spawn(
        *("part-write", "--store", str(store.root), "--plan-id", plan_id, "--run-id", "run-k"),
        *("--model", str(tiny_model), "--max-model-len", str(profile.max_model_len)),
    )
    child.wait_for("writing", at_least=2)  # part 2's temporary file is written, not renamed
    run_folder = results.run_dir(store.results_dir, "d", "run-k")
    assert len(list(run_folder.glob(".tmp-part-*"))) == 1
    # a reader in another process meanwhile (`blend query`) sees the finished part only
    assert len(run_rows(store, "run-k")) == 2
    child.kill()
    assert len(list(run_folder.glob("part-*.parquet"))) == 1  # the unfinished one is hidden
    report = execute(store, plan_id, tiny_model, profile.max_model_len, "run-k")
    assert (report.status, report.n_requests, report.n_skipped) == ("completed", 34, 2)
    assert not list(run_folder.glob(".tmp-*"))
    uninterrupted = execute(store, plan_id, tiny_model, profile.max_model_len, "run-u")
    assert uninterrupted.n_requests == 34
    assert run_rows(store, "run-k") == run_rows(store, "run-u")


def test_disk_full_mid_write_is_a_clear_error_and_leaves_no_partial_file(
    tmp_path: Path, tiny_model: Path, small_inputs: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path / "store")
    plan_id, profile = planned(store, small_inputs[0], tiny_model)
    real_write_table = results.pq.write_table
    writes: list[int] = []

    def fill_up_on_third(table: Any, where: Any, **kwargs: Any) -> None:
        writes.append(table.num_rows)
        if len(writes) == 3:
            Path(where).write_bytes(b"PAR1 half a part")  # what a full disk leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write_table(table, where, **kwargs)

    monkeypatch.setattr(results.pq, "write_table", fill_up_on_third)
    with pytest.raises(ResultWriteError, match=r"cannot write result part .*No space left"):
        execute(store, plan_id, tiny_model, profile.max_model_len, "run-f")
    run_folder = results.run_dir(store.results_dir, "d", "run-f")
    names = sorted(p.name for p in run_folder.iterdir())
    assert [n for n in names if not n.startswith("part-")] == [".lock"]  # no .tmp-* left
    written = len(run_rows(store, "run-f"))
    assert written <= 34 - writes[2]  # the failed part's rows are not results (parts queued
    # behind it may have been written before the error reached the run loop)
    with store.connect(views=False) as con:
        status = fetch_dicts(con, "SELECT status FROM runs WHERE run_id = 'run-f'")
    assert status == [{"status": "failed"}]
    monkeypatch.setattr(results.pq, "write_table", real_write_table)  # space again
    report = execute(store, plan_id, tiny_model, profile.max_model_len, "run-f")
    assert (report.status, report.n_requests, report.n_skipped) == ("completed", 34, written)
    execute(store, plan_id, tiny_model, profile.max_model_len, "run-u")
    assert run_rows(store, "run-f") == run_rows(store, "run-u")
