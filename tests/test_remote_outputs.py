"""Outputs by URI against moto's real S3 server on this machine: `blend export --out s3://...`
uploads exactly what a local export writes, refusals come in one line before any work and
leave no object; run folders under a `--results-uri` of the same server hold the parts."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from blend.cli import main
from blend.engines.base import EngineConfig
from blend.engines.tokenize import tokenizer_sha256
from blend.execute.stage import execute_plan
from blend.plan.stage import PlanOptions, plan_dataset
from blend.scale.parts import RunFolder, run_folder_uri
from blend.store.database import Store
from blend.store.export import ExportError, ExportFormat, export_results
from blend.store.results import ResultRow
from tests.support.fake_engine import FakeEngine
from tests.support.s3_server import S3Server, s3_server
from tests.support.seeds import seed_store


@pytest.fixture(scope="module")
def server() -> Any:
    with s3_server() as started:
        yield started


@pytest.fixture
def s3(server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The server, emptied, with pyarrow pointed at it through AWS_ENDPOINT_URL."""
    server.use(monkeypatch)
    return server


@pytest.fixture(scope="module")
def answered(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Store:
    """The seeded dataset "ds", answered by one run of the fake engine (read, never changed)."""
    store = Store.open(tmp_path_factory.mktemp("answered") / "store")
    seed_store(store, tokenizer_sha256(tiny_model))
    options = PlanOptions(planner="dfs", batch_size=2, warmup_fraction=0.0)
    plan = plan_dataset(store, "ds", options, model_dir=tiny_model)
    execute_plan(store, plan.plan_id, EngineConfig(model_dir=tiny_model), engine_factory=FakeEngine)
    return store


def blend(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """Run the `blend` entry point: (exit code, stdout, stderr lines)."""
    monkeypatch.setattr(sys, "argv", ["blend", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return exited.value.code, out, [line for line in err.splitlines() if line]


@pytest.mark.parametrize("fmt", [ExportFormat.OPENAI_BATCH, ExportFormat.PARQUET])
def test_an_export_to_s3_uploads_what_a_local_export_writes(
    s3: S3Server, answered: Store, tmp_path: Path, fmt: ExportFormat
) -> None:
    s3.put("exports", "keep.txt", b"")  # the bucket
    local = export_results(answered, "ds", tmp_path / "local.out", fmt)
    uri = "s3://exports/nightly/answers.out"
    remote = export_results(answered, "ds", uri, fmt)
    assert remote.path == uri
    assert (remote.n_rows, remote.n_errors) == (local.n_rows, local.n_errors)
    assert remote.n_rows > 0
    uploaded = s3.get("exports", "nightly/answers.out")
    if fmt is ExportFormat.PARQUET:
        assert pq.read_table(pa.BufferReader(uploaded)).equals(pq.read_table(local.path))
    else:
        assert uploaded == (tmp_path / "local.out").read_bytes()
    assert list(answered.tmp_dir.iterdir()) == []  # the local copy is gone


def test_blend_export_takes_an_s3_uri(
    s3: S3Server,
    answered: Store,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s3.put("exports", "keep.txt", b"")
    argv = ["export", "--dataset", "ds", "--out", "s3://exports/a.jsonl"]
    code, out, err = blend(monkeypatch, capsys, *argv, "--store", str(answered.root))
    assert code in (0, None), err
    assert "to s3://exports/a.jsonl" in " ".join(out.split())
    assert s3.get("exports", "a.jsonl").count(b"\n") > 0


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("s3://nobucket/a.jsonl", "s3://nobucket/a.jsonl: no such bucket 'nobucket'"),
        ("s3://exports/folder", "s3://exports/folder: a folder (a prefix of objects)"),
        ("nosuch://x/a.jsonl", "nosuch://x/a.jsonl: unknown URI scheme nosuch://"),
    ],
)
def test_an_export_target_that_cannot_be_written_is_one_line(
    s3: S3Server,
    answered: Store,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    uri: str,
    said: str,
) -> None:
    s3.put("exports", "folder/inside.txt", b"x")
    argv = ["export", "--dataset", "ds", "--out", uri, "--store", str(answered.root)]
    code, _, err = blend(monkeypatch, capsys, *argv)
    assert code == 1
    assert len(err) == 1 and said in err[0], err
    assert s3.keys("exports") == ["folder/inside.txt"]


def test_an_export_without_access_is_one_line_and_uploads_nothing(
    s3: S3Server, answered: Store
) -> None:
    s3.put("exports", "keep.txt", b"")
    s3.deny_all()
    with pytest.raises(ExportError) as raised:
        export_results(answered, "ds", "s3://exports/a.jsonl", ExportFormat.JSONL)
    assert str(raised.value).startswith("s3://exports/a.jsonl: access denied: check AWS_")
    assert "\n" not in str(raised.value)
    s3.allow_all()  # to look
    assert s3.keys("exports") == ["keep.txt"]
    assert list(answered.tmp_dir.glob("export-*")) == []


def _row(request_id: str) -> ResultRow:
    now = datetime.now(UTC)
    return ResultRow(
        dataset="ds",
        snapshot=1,
        request_id=request_id,
        seq=0,
        prompt_sha256="sha",
        output_text="x",
        output_token_ids=[1],
        finish_reason="length",
        n_prompt_tokens=1,
        n_output_tokens=1,
        n_cached_tokens=0,
        error=None,
        run_id="r",
        plan_id="p",
        model="m",
        model_sha256="s",
        tokenizer_sha256="t",
        sampling_json="{}",
        engine="fake",
        engine_version="0",
        started_at=now,
        finished_at=now,
    )


@pytest.mark.parametrize("endpoint_in_uri", [False, True])
def test_a_results_uri_on_s3_holds_the_engines_parts(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint_in_uri: bool
) -> None:
    s3.put("results", "keep.txt", b"")
    results_uri = "s3://results/blend"
    if endpoint_in_uri:  # the run folder goes before the query
        monkeypatch.delenv("AWS_ENDPOINT_URL")
        results_uri += f"?endpoint_override={s3.host}&scheme=http"
    results = tmp_path / "results"
    run = results / "dataset=ds" / "run_id=r"
    uri = run_folder_uri(results_uri, results, run)
    folder = RunFolder(uri)
    folder.write_part("e0", [_row("a"), _row("b")], {"blend.engine_tag": "e0"}, 0)
    folder.write_part("e1", [_row("c")], {"blend.engine_tag": "e1"}, 0)
    assert folder.done_request_ids() == {"a", "b", "c"}
    assert sum(folder.rows_by_part({}).values()) == 3
    parts = [key for key in s3.keys("results") if key.endswith(".parquet")]
    assert len(parts) == 2
    assert all(key.startswith("blend/dataset=ds/run_id=r/part-e") for key in parts)
