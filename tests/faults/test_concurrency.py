"""Two blend processes on one store: the writer lock makes the second wait (saying for whom),
both finish with every row, and the database is whole; clear errors for a store that cannot
be written (DuckDB's lock held outside blend, a read-only folder)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from blend.store import store_lock
from blend.store.database import Store, fetch_dicts
from blend.store.store_lock import StoreBusyError, StoreNotWritableError
from tests.support.children import REPO, Child

CLI = [sys.executable, "-m", "blend.cli"]


def test_a_second_writer_waits_for_the_first_and_says_for_whom(
    spawn: Callable[..., Child], store: Store
) -> None:
    with store.connect(views=False) as con:
        con.execute("CREATE TABLE t (writer VARCHAR)")
        con.execute("INSERT INTO t VALUES ('first')")
        child = spawn("hold-writer", "--store", str(store.root), "--hold-s", "0")
        # the child blocks on the lock this test holds: nothing of it is written yet
        assert child.proc.stderr is not None
        waiting = child.proc.stderr.readline()
        assert f"store {store.root} is being written by pid {os.getpid()}" in waiting
        assert "waiting" in waiting
    child.wait_for("held")
    child.finish()
    with store.connect(views=False) as con:
        assert fetch_dicts(con, "SELECT writer FROM t") == [{"writer": "first"}]


def test_waiting_is_bounded_by_the_environment(
    spawn: Callable[..., Child], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    child = spawn("hold-writer", "--store", str(store.root))
    child.wait_for("held")
    monkeypatch.setenv(store_lock.WAIT_ENV, "0.5")
    busy = pytest.raises(StoreBusyError, match=rf"held by pid {child.pid} \(.*hold-writer")
    with busy, store.connect(views=False):
        pass


def test_duckdb_lock_held_outside_blend_is_a_clear_error(
    spawn: Callable[..., Child], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with store.connect(views=False):
        pass  # the database exists
    child = spawn("hold-duckdb", "--db", str(store.db_path))
    child.wait_for("held")
    monkeypatch.setattr(store_lock, "DUCKDB_LOCK_WAIT_S", 0.5)
    busy = pytest.raises(StoreBusyError, match="outside blend's writer lock")
    with busy, store.connect(views=False):
        pass


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_store_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    with store.connect(views=False):
        pass
    before = sorted(p.name for p in store.root.iterdir())
    store.root.chmod(0o555)
    try:
        refused = pytest.raises(StoreNotWritableError, match="is not writable")
        with refused, store.connect(views=False):
            pass
        done = subprocess.run(
            [*CLI, "ingest", "x.jsonl", "--dataset", "d", "--store", str(store.root)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert sorted(p.name for p in store.root.iterdir()) == before
    finally:
        store.root.chmod(0o755)
    assert done.returncode == 1
    assert "is not writable" in done.stderr
    assert "Traceback" not in done.stderr


def test_two_ingests_at_once_both_finish_with_all_rows(
    tmp_path: Path, small_inputs: list[Path]
) -> None:
    store = Store.open(tmp_path / "store")
    procs = [
        subprocess.Popen(
            [*CLI, "ingest", str(path), "--dataset", f"d{i}", "--store", str(store.root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for i, path in enumerate(small_inputs)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    with store.connect() as con:
        counts = fetch_dicts(
            con,
            "SELECT dataset, count(*) AS n, count(DISTINCT request_id) AS d FROM prompts "
            "GROUP BY dataset ORDER BY dataset",
        )
        datasets = fetch_dicts(con, "SELECT dataset, snapshot FROM datasets ORDER BY dataset")
        check = fetch_dicts(con, "PRAGMA database_size")
    assert counts == [{"dataset": "d0", "n": 34, "d": 34}, {"dataset": "d1", "n": 34, "d": 34}]
    assert datasets == [{"dataset": "d0", "snapshot": 1}, {"dataset": "d1", "snapshot": 1}]
    assert check  # the file opens and reads back


def test_two_pipelines_at_once_both_finish_with_every_result(
    spawn: Callable[..., Child], tmp_path: Path, tiny_model: Path, small_inputs: list[Path]
) -> None:
    store = Store.open(tmp_path / "store")
    children = [
        spawn(
            "pipeline",
            *("--store", str(store.root), "--input", str(path), "--dataset", f"d{i}"),
            *("--model", str(tiny_model), "--step-s", "0.01"),
        )
        for i, path in enumerate(small_inputs)
    ]
    for child in children:
        child.wait_for("done")
        child.finish()
    with store.connect() as con:
        per_dataset = fetch_dicts(
            con,
            "SELECT dataset, count(*) AS n, count(DISTINCT request_id) AS d FROM results "
            "GROUP BY dataset ORDER BY dataset",
        )
        missing = fetch_dicts(
            con,
            "SELECT p.dataset, p.request_id FROM prompts AS p "
            "ANTI JOIN results AS r USING (dataset, request_id)",
        )
        runs = fetch_dicts(con, "SELECT dataset, status FROM runs ORDER BY dataset")
    assert per_dataset == [
        {"dataset": "d0", "n": 34, "d": 34},
        {"dataset": "d1", "n": 34, "d": 34},
    ]
    assert missing == []
    assert runs == [
        {"dataset": "d0", "status": "completed"},
        {"dataset": "d1", "status": "completed"},
    ]


def test_readers_share_the_lock_and_a_writer_waits_for_them(
    spawn: Callable[..., Child], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with store.connect(views=False):
        pass  # the lock file exists once a writer has been here
    with store_lock.reading(store.root), store_lock.reading(store.root):  # two readers at once
        writer = spawn("hold-writer", "--store", str(store.root), "--hold-s", "30")
        assert writer.proc.stderr is not None
        assert "— waiting" in writer.proc.stderr.readline()  # the writer waits for the readers
    writer.wait_for("held")
    monkeypatch.setenv(store_lock.WAIT_ENV, "0.3")
    with pytest.raises(StoreBusyError, match=rf"being written by pid {writer.pid}"):  # noqa: SIM117
        with store_lock.reading(store.root):
            pass
