"""The real execute stage with the null engine: complete rows, lineage, resume; the run's
requests staged in plan order and read back by position."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blend.engines.base import EngineConfig
from blend.engines.null_engine import PLACEHOLDER_TEXT, NullEngine
from blend.engines.tokenize import tokenizer_sha256
from blend.execute.requests import STAGING_PREFIX, StagedRequests
from blend.execute.stage import ExecuteOptions, execute_plan
from blend.plan.items import RequestLoader, read_plan_header, shared_across_gaps
from blend.plan.stage import PlanOptions, plan_dataset
from blend.store.database import Store, fetch_dicts
from blend.store.results import finished_parts, read_metadata
from tests.support.seeds import seed_groups


@pytest.fixture
def planned(store: Store, tiny_model: Path) -> tuple[Store, str, EngineConfig]:
    seed_groups(store, tokenizer_sha256(tiny_model))  # 24 prompts in two prefix groups
    options = PlanOptions(planner="dfs", warmup_fraction=0.0)
    plan = plan_dataset(store, "ds", options, model_dir=tiny_model)
    return store, plan.plan_id, EngineConfig(model_dir=tiny_model)


def _rows(store: Store) -> list[dict]:
    with store.connect() as con:
        return fetch_dicts(
            con,
            "SELECT request_id, seq, run_id, engine, output_text, output_token_ids, "
            "finish_reason, n_output_tokens, error FROM results ORDER BY seq",
        )


def test_a_null_run_writes_one_placeholder_row_per_request_with_lineage_null(planned) -> None:
    store, plan_id, config = planned
    report = execute_plan(
        store, plan_id, config, engine_factory=NullEngine, options=ExecuteOptions(chunk_rows=5)
    )
    rows = _rows(store)
    assert (report.status, report.n_requests, report.n_errors) == ("completed", 24, 0)
    assert [r["seq"] for r in rows] == list(range(24))
    assert len({r["request_id"] for r in rows}) == 24
    assert {(r["engine"], r["output_text"], r["run_id"]) for r in rows} == {
        ("null", PLACEHOLDER_TEXT, report.run_id)
    }
    # group a asks for 3 tokens at most (length), group b for 9 (the engine's 4: stop)
    assert {(r["request_id"][0], r["n_output_tokens"], r["finish_reason"]) for r in rows} == {
        ("a", 3, "length"),
        ("b", 4, "stop"),
    }
    meta = read_metadata(finished_parts(report.results_dir)[0])
    assert meta["blend.engine"] == "null"
    assert '"null_output_tokens":4' in meta["blend.engine_params_json"]
    with store.connect() as con:
        assert fetch_dicts(con, "SELECT engine, status FROM runs") == [
            {"engine": "null", "status": "completed"}
        ]
    assert not list(store.tmp_dir.glob(f"{STAGING_PREFIX}*"))  # no scratch file left


def test_an_interrupted_null_run_resumes_without_duplicates(planned) -> None:
    store, plan_id, config = planned

    def interrupt(done: int, total: int, output_tokens: int) -> None:
        if done >= 7:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of the run

    config = EngineConfig(model_dir=config.model_dir, max_num_seqs=2)  # 4 a step
    options = ExecuteOptions(
        flush_rows=3, chunk_rows=5, progress_interval_s=0.0, plan_budgets=False
    )
    with pytest.raises(KeyboardInterrupt):
        execute_plan(
            store,
            plan_id,
            config,
            run_id="run-n",
            engine_factory=NullEngine,
            options=options,
            progress=interrupt,
        )
    written = len(_rows(store))
    assert 0 < written < 24
    engines: list[NullEngine] = []

    def factory(cfg: EngineConfig) -> NullEngine:
        engines.append(NullEngine(cfg))
        return engines[-1]

    report = execute_plan(
        store, plan_id, config, run_id="run-n", engine_factory=factory, options=options
    )
    rows = _rows(store)
    assert (report.status, report.n_skipped, report.n_requests) == ("completed", written, 24)
    assert sorted(r["seq"] for r in rows) == list(range(24))  # each position once
    assert engines[0].stats().prefix_cache_queries > 0


def test_staged_requests_match_the_plan_at_any_position(planned) -> None:
    store, plan_id, _ = planned
    header = read_plan_header(store, plan_id)
    order = [23, 0, 7, 5, 6, 12, 11, 4]  # across chunks of 5, back and forth
    expected = RequestLoader(store, header, chunk_rows=5).take(order)
    with StagedRequests(store, header, "run-s", chunk_rows=5, cached_chunks=2) as staged:
        assert not list(store.tmp_dir.glob(f"{STAGING_PREFIX}*"))  # unlinked once open
        got = staged.take(np.array(order))
        assert got == expected
        assert [staged.finish(r.request_id).seq for r in got] == order
        assert staged.meta == {}
        with pytest.raises(KeyError, match="plan position 24"):
            staged.take([24])


def test_requests_with_the_same_sampling_share_one_read_only_mapping(planned) -> None:
    store, plan_id, _ = planned
    header = read_plan_header(store, plan_id)
    with StagedRequests(store, header, "run-m", chunk_rows=24) as staged:
        got = staged.take(np.arange(24))
    by_group = {
        group: [r.sampling for r in got if r.request_id.startswith(group)] for group in "ab"
    }
    assert {g: len(s) for g, s in by_group.items()} == {"a": 12, "b": 12}
    for sampling in by_group.values():  # parsed once for the chunk, not once per request
        assert all(s is sampling[0] for s in sampling)
    assert (by_group["a"][0]["max_tokens"], by_group["b"][0]["max_tokens"]) == (3, 9)
    with pytest.raises(TypeError):  # an engine cannot change the others' fields through it
        by_group["a"][0]["max_tokens"] = 4  # type: ignore[index]


def test_the_prefix_shared_across_skipped_positions_is_the_least_in_each_gap() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):  # against the definition, on random plans and random skips
        shared_prev = rng.integers(0, 20, int(rng.integers(1, 40))).astype(float)
        n = len(shared_prev)
        kept = np.sort(rng.choice(n, int(rng.integers(1, n + 1)), replace=False))
        expected = [0.0] + [
            shared_prev[kept[k - 1] + 1 : kept[k] + 1].min() for k in range(1, len(kept))
        ]
        assert shared_across_gaps(shared_prev, kept).tolist() == expected
