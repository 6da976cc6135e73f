"""Two engine actors on a local Ray cluster (the fake engine): one run, every request once,
also when one engine actor is SIGKILLed mid-share."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import pyarrow.parquet as pq
import pytest

from blend.execute.ray_fleet import execute_on_ray
from blend.execute.stage import ExecuteOptions, execute_plan
from blend.store.database import fetch_dicts
from blend.store.results import finished_parts, read_metadata
from tests.support.fake_engine import FakeEngine


def _rows(store) -> list[dict]:
    with store.connect() as con:
        return fetch_dicts(con, "SELECT request_id, seq, run_id FROM results ORDER BY seq")


def _round_robin(sequence, cost, k: int) -> list[np.ndarray]:
    return [np.arange(i, len(sequence.index), k) for i in range(k)]


def test_two_engines_run_every_request_once_into_one_run(ray_cluster, planned_groups) -> None:
    store, plan_id, config, rows = planned_groups
    options = ExecuteOptions(engines=2, flush_rows=4)
    report = execute_plan(store, plan_id, config, engine_factory=FakeEngine, options=options)
    assert (report.status, report.n_requests, report.n_skipped) == ("completed", len(rows), 0)
    results = _rows(store)
    assert sorted(r["request_id"] for r in results) == sorted(r[0] for r in rows)
    assert [r["seq"] for r in results] == list(range(len(rows)))
    parts = finished_parts(report.results_dir)
    metas = [read_metadata(p) for p in parts]
    assert {m["blend.engine_tag"] for m in metas} == {"e0", "e1"}
    assert {m["blend.run_id"] for m in metas} == {report.run_id}
    assert {m["blend.n_engines"] for m in metas} == {"2"}
    assert all(m["blend.engine_node"] and int(m["blend.engine_pid"]) > 0 for m in metas)
    assert all(m["blend.engine"] == "fake" for m in metas)
    with store.connect() as con:
        runs = fetch_dicts(con, "SELECT run_id, status, n_requests FROM runs")
    assert runs == [{"run_id": report.run_id, "status": "completed", "n_requests": len(rows)}]


def test_a_non_contiguous_split_keeps_each_engines_share(ray_cluster, planned_groups) -> None:
    store, plan_id, config, rows = planned_groups
    options = ExecuteOptions(engines=2, flush_rows=100)
    report = execute_on_ray(
        store,
        plan_id,
        config,
        run_id=None,
        options=options,
        engine_factory=FakeEngine,
        split=_round_robin,
    )
    assert report.n_requests == len(rows)
    seqs_by_share: dict[str, list[int]] = {}
    for part in finished_parts(report.results_dir):
        share = read_metadata(part)["blend.share_index"]
        seqs_by_share.setdefault(share, []).extend(pq.read_table(part)["seq"].to_pylist())
    assert sorted(seqs_by_share["0"]) == list(range(0, len(rows), 2))
    assert sorted(seqs_by_share["1"]) == list(range(1, len(rows), 2))


def test_sigkill_of_one_engine_resumes_its_share_elsewhere_exactly_once(
    ray_cluster, planned_groups
) -> None:
    store, plan_id, config, rows = planned_groups
    slow = partial(FakeEngine, idle_steps=1, idle_step_s=0.1)  # about 2 s per share of 20
    options = ExecuteOptions(engines=2, flush_rows=2)
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(
            execute_plan,
            store,
            plan_id,
            config,
            run_id="run-k",
            engine_factory=slow,
            options=options,
        )
        folder = store.results_dir / "dataset=ds" / "run_id=run-k"
        deadline = time.monotonic() + 120
        while not list(folder.glob("part-e0-*.parquet")):
            assert not running.done(), running.result()
            assert time.monotonic() < deadline, "engine e0 wrote no part"
            time.sleep(0.01)
        victim = read_metadata(next(folder.glob("part-e0-*.parquet")))
        os.kill(int(victim["blend.engine_pid"]), signal.SIGKILL)
        report = running.result(timeout=180)
    assert report.status == "completed"
    assert report.n_engine_restarts >= 1
    ids = [r["request_id"] for r in _rows(store)]
    assert len(ids) == len(rows)  # 0 duplicated
    assert set(ids) == {r[0] for r in rows}  # 0 lost
    victims_share = victim["blend.share_index"]
    tags = {
        read_metadata(p)["blend.engine_tag"]
        for p in finished_parts(report.results_dir)
        if read_metadata(p)["blend.share_index"] == victims_share
    }
    assert "e0" in tags and len(tags) == 2  # the rest of its share ran on another engine
    assert not list(folder.glob(".tmp-*"))


def test_a_failed_multi_engine_run_resumes_without_duplicates(ray_cluster, planned_groups) -> None:
    from blend.engines.supervisor import EngineFailedError, RestartPolicy

    store, plan_id, config, rows = planned_groups
    options = ExecuteOptions(engines=2, flush_rows=1, restart_policy=RestartPolicy(max_restarts=0))
    crashing = partial(FakeEngine, crash_after=5)
    with pytest.raises(EngineFailedError, match="engine died"):
        execute_plan(
            store, plan_id, config, run_id="run-f", engine_factory=crashing, options=options
        )
    written = len(_rows(store))
    assert 5 <= written < len(rows)
    with store.connect() as con:
        assert fetch_dicts(con, "SELECT status FROM runs") == [{"status": "failed"}]
    report = execute_plan(
        store, plan_id, config, run_id="run-f", engine_factory=FakeEngine, options=options
    )
    assert (report.status, report.n_skipped, report.n_requests) == (
        "completed",
        written,
        len(rows),
    )
    ids = [r["request_id"] for r in _rows(store)]
    assert sorted(ids) == sorted(r[0] for r in rows)


def test_an_engine_that_cannot_start_fails_the_run_at_once(ray_cluster, planned_groups) -> None:
    from blend.engines.supervisor import EngineFailedError

    store, plan_id, config, _ = planned_groups
    broken = partial(FakeEngine, start_error=RuntimeError("no GPU left"))
    with pytest.raises(EngineFailedError, match=r"could not start(.|\n)*no GPU left"):
        execute_plan(
            store, plan_id, config, engine_factory=broken, options=ExecuteOptions(engines=2)
        )
    with store.connect() as con:
        assert fetch_dicts(con, "SELECT count(*) AS n FROM runs") == [{"n": 0}]


def test_engines_write_through_a_results_url(ray_cluster, planned_groups) -> None:
    """--results-uri: the engines reach the store's results folder by URL (here file://)."""
    store, plan_id, config, rows = planned_groups
    url = "file://" + str(store.results_dir.resolve())
    options = ExecuteOptions(engines=2, flush_rows=8, results_uri=url)
    report = execute_plan(store, plan_id, config, engine_factory=FakeEngine, options=options)
    assert report.n_requests == len(rows)
    assert sorted(r["request_id"] for r in _rows(store)) == sorted(r[0] for r in rows)
