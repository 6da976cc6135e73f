"""`blend run --engines 2`: two real vLLM CPU engines as Ray actors run one plan into one run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from blend.cli import app
from blend.store.database import Store, fetch_dicts
from blend.store.results import finished_parts, read_metadata
from tests.support.attacks import write_jsonl

pytestmark = pytest.mark.engine


def test_two_vllm_engines_run_one_plan_exactly_once(
    ray_cluster, tmp_path: Path, tiny_model: Path
) -> None:
    shared = "You answer questions about the Python language reference. " * 20
    records = [
        {
            "custom_id": f"q{i}",
            "prompt": f"{shared}\nQuestion {i}: what is a lambda?",
            "max_tokens": 4,
        }
        for i in range(12)
    ]
    src = write_jsonl(tmp_path / "two.jsonl", records)
    store_dir = tmp_path / "store"
    args = ["run", str(src), "--store", str(store_dir), "--model", str(tiny_model)]
    result = CliRunner().invoke(
        app, [*args, "--engines", "2", "--kv-cache-gib", "0.25", "--warmup-fraction", "0"]
    )
    assert result.exit_code == 0, result.output
    with Store.open(store_dir).connect() as con:
        rows = fetch_dicts(con, "SELECT request_id, run_id, n_output_tokens, error FROM results")
        runs = fetch_dicts(con, "SELECT status, n_requests, engine FROM runs")
    assert sorted(r["request_id"] for r in rows) == sorted(f"q{i}" for i in range(12))
    assert all(r["error"] is None and 1 <= r["n_output_tokens"] <= 4 for r in rows)
    assert runs == [{"status": "completed", "n_requests": 12, "engine": "vllm"}]
    (run_id,) = {r["run_id"] for r in rows}
    run_dir = store_dir / "results" / "dataset=two" / f"run_id={run_id}"
    tags = {read_metadata(p)["blend.engine_tag"] for p in finished_parts(run_dir)}
    assert tags == {"e0", "e1"}  # both engines wrote parts of the one run
