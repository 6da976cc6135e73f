"""`blend run --engine hetegen` on the small demo dataset: results and lineage like vLLM's, and
a run killed midway resumes without running its finished requests again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import blend.engines.hetegen_engine as hetegen_engine
from blend.cli import app
from blend.demo.dataset import DemoSize, write_demo_dataset
from blend.engines.base import EngineOutput, Feed
from blend.engines.settings import HETEGEN_MAX_NUM_SEQS
from blend.store.database import Store, fetch_dicts

runner = CliRunner()
HeteGenEngine = hetegen_engine.HeteGenEngine  # before any test replaces it


class _Killed(BaseException):
    """Stands for the process being killed (not an engine failure the supervisor retries)."""


def _recording_engine(seen: list[str], kill_after: int | None) -> type:
    class Recording(HeteGenEngine):
        def generate(self, feed: Feed) -> Iterator[list[EngineOutput]]:
            n_finished = 0
            for finished in super().generate(feed):
                seen.extend(o.request_id for o in finished)
                n_finished += len(finished)
                yield finished
                if kill_after is not None and n_finished >= kill_after:
                    raise _Killed

    return Recording


def _blend_run(src: Path, store_dir: Path, model: Path) -> Any:
    return runner.invoke(
        app,
        [
            "run", str(src), "--store", str(store_dir), "--model", str(model),
            "--engine", "hetegen", "--warmup-fraction", "0", "--no-search-settings",
        ],
    )  # fmt: skip


@pytest.mark.usefixtures("one_torch_thread")
def test_demo_dataset_runs_through_hetegen_and_resumes_after_a_kill(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_demo_dataset(tmp_path / "demo.jsonl", DemoSize.small())
    store_dir = tmp_path / "store"
    before_kill: list[str] = []
    monkeypatch.setattr(hetegen_engine, "HeteGenEngine", _recording_engine(before_kill, 10))
    with pytest.raises(_Killed):
        _blend_run(src, store_dir, tiny_model)
    with Store.open(store_dir).connect() as con:
        kept = {r["request_id"] for r in fetch_dicts(con, "SELECT request_id FROM results")}
    assert kept and kept <= set(before_kill)

    after: list[str] = []
    monkeypatch.setattr(hetegen_engine, "HeteGenEngine", _recording_engine(after, None))
    resumed = _blend_run(src, store_dir, tiny_model)
    assert resumed.exit_code == 0, resumed.output
    assert "continued the unfinished run" in resumed.output
    assert not kept & set(after)  # finished rows were not run again

    with Store.open(store_dir).connect() as con:
        rows = fetch_dicts(
            con,
            "SELECT request_id, engine, engine_version, n_output_tokens, finish_reason, error "
            "FROM results",
        )
        runs = fetch_dicts(con, "SELECT * FROM runs")
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(kept) + len(after)
    assert {r["engine"] for r in rows} == {"hetegen"}
    assert all(r["engine_version"].startswith("transformers-") for r in rows)
    good = [r for r in rows if r["error"] is None]
    assert len(good) >= len(rows) - 2  # the over-length summaries are error rows, as with vLLM
    assert all(r["n_output_tokens"] >= 1 for r in good)
    params = json.loads(runs[-1]["params_json"])
    assert params["engine"] == "hetegen"
    assert params["hetegen_placement"]["offloaded_layers"] > 0
    # the plan named hetegen's own budgets, and the engine ran with them (not vLLM's defaults)
    with Store.open(store_dir).connect() as con:
        plans = fetch_dicts(con, "SELECT max_num_seqs, settings_source FROM plans")
    assert {p["settings_source"] for p in plans} == {"hetegen-default"}
    assert params["max_num_seqs"] == plans[0]["max_num_seqs"] == HETEGEN_MAX_NUM_SEQS
    assert "hetegen-default" in resumed.output
