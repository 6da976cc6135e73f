"""`--model org/name[@revision]`: a model of the local Hugging Face cache, as the commands and
the pipeline flow's options take it. A missing one fails at once, in one line with the command
that downloads it, before anything is written; a found one is profiled with its real tokenizer,
and its id and revision (the snapshot's commit) reach the lineage of every row.

The cache is laid out as huggingface_hub lays it out, with the demo model's real files
(tests/support/hub_cache.py); nothing is downloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from blend.cli import app, main
from blend.engines.tokenize import tokenizer_sha256
from blend.store.database import Store, fetch_dicts
from blend.store.results import ResultRow, finished_parts, result_table, run_dir
from flows.options import ModelOptions
from tests.support.children import REPO
from tests.support.cli_text import flat
from tests.support.fake_engine import FakeEngine
from tests.support.hub_cache import cache_model, use_hub_cache

COMMIT = "0123456789abcdef0123456789abcdef01234567"
MODEL = "acme/tiny-chat"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model: Path) -> Path:
    """A Hugging Face cache holding the demo model as acme/tiny-chat (main: COMMIT)."""
    cache = use_hub_cache(monkeypatch, tmp_path / "hf-home")
    return cache_model(cache, MODEL, tiny_model, COMMIT)


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "nightly.jsonl"
    lines = [{"custom_id": f"q{i}", "prompt": f"what is {i}?", "max_tokens": 3} for i in range(4)]
    lines.append({"custom_id": "chat", "messages": [{"role": "user", "content": "hi"}]})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def blend(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str]:
    """`blend argv...` through the entry point: (exit code, stdout + stderr as words)."""
    monkeypatch.setattr(sys, "argv", ["blend", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), flat(captured.out + captured.err)


def datasets_in(store: Path) -> list[dict]:
    if not (store / "blend.duckdb").exists():
        return []
    with Store.open(store).connect(views=False) as con:
        return fetch_dicts(con, "SELECT dataset FROM datasets")


# --- a model that is not there -----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "INPUT"],
        ["run"],  # the demo input: not even written
        ["profile", "--dataset", "d"],
        ["plan", "--dataset", "d"],
    ],
    ids=["run file", "run demo", "profile", "plan"],
)
def test_a_missing_id_fails_at_once_with_the_download_command(
    argv: list[str],
    hub: Path,
    prompts: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = tmp_path / "store"
    command = [str(prompts) if a == "INPUT" else a for a in argv]
    code, said = blend(
        monkeypatch, capsys, *command, "--model", "acme/not-cached", "--store", str(store)
    )
    assert code == 1, said
    assert "Traceback" not in said
    assert said.startswith("blend failed: --model acme/not-cached: no such folder"), said
    assert "is not in the local cache" in said and "`hf download acme/not-cached`" in said
    assert datasets_in(store) == []  # nothing ingested
    assert not (store / "inputs").exists()  # the demo input was not written
    assert not (store / "results").exists()


# The entry point in a fresh process; then which slow modules it had imported.
_CHILD = """
import sys
from blend.cli import main
sys.argv = ["blend", *sys.argv[1:]]
try:
    main()
finally:
    print(sorted(m for m in ("vllm", "torch", "blend.execute.stage") if m in sys.modules))
"""


def test_a_missing_id_fails_before_the_engine_code_is_imported(hub: Path, tmp_path: Path) -> None:
    """As a user runs it, in a fresh process: `blend run` with a model not in the cache."""
    store = tmp_path / "store"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *("run", "--model", "acme/not-cached"), "--store", store],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},  # HF_HOME and HF_HUB_CACHE: the fixture's
        timeout=300,
    )
    seconds = time.perf_counter() - started
    said = flat(done.stderr)
    assert done.returncode == 1, done.stderr
    assert said.startswith("blend failed: --model acme/not-cached: no such folder"), said
    assert f"not in the local cache {hub.parents[2]}" in said  # the child read HF_HUB_CACHE
    assert "Traceback" not in done.stderr
    assert done.stdout.strip() == "[]"  # neither vLLM, torch nor the executor imported
    assert datasets_in(store) == [] and not (store / "inputs").exists()
    print(f"blend run with a model not in the cache failed after {seconds:.1f} s")


def test_a_folder_without_config_is_one_line_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    store = tmp_path / "store"
    code, said = blend(monkeypatch, capsys, "run", "--model", str(folder), "--store", str(store))
    assert code == 1 and "Traceback" not in said
    assert said == f"blend failed: --model {folder} is not a model folder (no config.json)"
    assert not (store / "inputs").exists()


def test_the_flow_option_takes_an_id_and_finds_it(hub: Path, store: Store) -> None:
    assert ModelOptions(model=MODEL).model_dir(store) == hub.resolve()
    assert ModelOptions(model=f"{MODEL}@main").model_dir(store) == hub.resolve()
    with pytest.raises(ValueError, match="`hf download acme/not-cached`"):
        ModelOptions(model="acme/not-cached").model_dir(store)


# --- a model that is there ---------------------------------------------------------------------


def test_profile_by_id_uses_the_cached_tokenizer_and_records_the_revision(
    hub: Path, prompts: Path, tmp_path: Path, tiny_model: Path
) -> None:
    store = tmp_path / "store"
    ingest = runner.invoke(app, ["ingest", str(prompts), "--dataset", "d", "--store", str(store)])
    assert ingest.exit_code == 0, ingest.output
    result = runner.invoke(
        app, ["profile", "--dataset", "d", "--model", MODEL, "--store", str(store)]
    )
    assert result.exit_code == 0, result.output
    assert "profile 5 prompts" in flat(result.output)
    with Store.open(store).connect(views=False) as con:
        profile = fetch_dicts(con, "SELECT model, model_revision, tokenizer_sha256 FROM profiles")
        tokens = fetch_dicts(con, "SELECT count(*) AS n FROM prompt_tokens")[0]["n"]
    assert profile == [
        {
            "model": MODEL,
            "model_revision": COMMIT,
            "tokenizer_sha256": tokenizer_sha256(tiny_model),
        }
    ]
    assert tokens == 5


def test_a_run_by_id_records_the_id_and_revision_in_lineage(
    hub: Path,
    prompts: Path,
    tmp_path: Path,
    tiny_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole pipeline (`blend run`), the engine faked: the runs row, every result row,
    the row_lineage view, the Parquet footers and the OpenLineage events carry the id and the
    snapshot's commit; the same run from the plain folder keeps the folder's name."""
    import blend.engines.vllm_engine

    monkeypatch.setattr(blend.engines.vllm_engine, "VllmEngine", FakeEngine)
    store = tmp_path / "store"
    result = runner.invoke(app, ["run", str(prompts), "--model", MODEL, "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert f"model: {MODEL} at revision {COMMIT}" in flat(result.output)
    with Store.open(store).connect() as con:
        runs = fetch_dicts(con, "SELECT run_id, model, model_revision FROM runs")
        rows = fetch_dicts(con, "SELECT DISTINCT model, model_revision FROM results")
        traced = fetch_dicts(con, "SELECT DISTINCT model, model_revision FROM row_lineage")
    assert [(r["model"], r["model_revision"]) for r in runs] == [(MODEL, COMMIT)]
    assert rows == traced == [{"model": MODEL, "model_revision": COMMIT}]
    run_id = runs[0]["run_id"]
    parts = finished_parts(store / "results" / "dataset=nightly" / f"run_id={run_id}")
    footer = pq.read_schema(parts[0]).metadata
    assert footer[b"blend.model"] == MODEL.encode()
    assert footer[b"blend.model_revision"] == COMMIT.encode()
    events = (store / "lineage" / f"{run_id}.jsonl").read_text().splitlines()
    facet = json.loads(events[0])["run"]["facets"]["blend"]
    assert (facet["model"], facet["model_revision"]) == (MODEL, COMMIT)

    # The same files as a plain folder: named by the folder, no revision (as before ids).
    again = runner.invoke(
        app, ["run", str(prompts), "--full", "--model", str(tiny_model), "--store", str(store)]
    )
    assert again.exit_code == 0, again.output
    with Store.open(store).connect() as con:
        models = fetch_dicts(
            con, "SELECT model, model_revision FROM runs ORDER BY started_at, run_id"
        )
    assert [(m["model"], m["model_revision"]) for m in models] == [
        (MODEL, COMMIT),
        (tiny_model.name, None),
    ]


# --- stores made before the revision was recorded ----------------------------------------------


def old_part(store: Store, run_id: str) -> None:
    """A Parquet part as blend wrote it before results had a model_revision column."""
    row = ResultRow(
        dataset="d",
        snapshot=1,
        request_id=f"{run_id}-a",
        seq=0,
        prompt_sha256="sha-a",
        output_text="out",
        output_token_ids=[5],
        finish_reason="length",
        n_prompt_tokens=3,
        n_output_tokens=1,
        n_cached_tokens=0,
        error=None,
        run_id=run_id,
        plan_id="p",
        model="tiny",
        model_sha256="m" * 64,
        tokenizer_sha256="t" * 64,
        sampling_json="{}",
        engine="vllm",
        engine_version="0",
        started_at=T0,
        finished_at=T0,
    )
    table = result_table([row], {}).drop_columns(["model_revision"])
    folder = run_dir(store.results_dir, "d", run_id)
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-00000-0000aaaa.parquet")


def test_an_earlier_store_reads_on_with_and_without_revisions(store: Store) -> None:
    with store.connect(views=False) as con:  # a database from before 009_model_revision.sql
        con.execute("ALTER TABLE runs DROP COLUMN model_revision")
        con.execute("ALTER TABLE profiles DROP COLUMN model_revision")
    old_part(store, "r-old")
    with store.connect() as con:  # the schema adds the columns back
        assert fetch_dicts(con, "SELECT model_revision FROM row_lineage") == [
            {"model_revision": None}
        ]
        con.execute(
            "INSERT INTO runs (run_id, plan_id, dataset, snapshot, engine, engine_version, "
            "model, model_sha256, model_revision, params_json, started_at, status) "
            "VALUES ('r-new', 'p', 'd', 1, 'vllm', '0', ?, 'm', ?, '{}', now(), 'completed')",
            [MODEL, COMMIT],
        )
    old_part(store, "r-new")  # a part of the new run, rewritten with the column below
    new = run_dir(store.results_dir, "d", "r-new") / "part-00000-0000aaaa.parquet"
    table = pq.read_table(new)
    pq.write_table(table.append_column("model_revision", pa.array([COMMIT])), new)
    with store.connect() as con:
        rows = fetch_dicts(con, "SELECT run_id, model_revision FROM results ORDER BY run_id")
        traced = fetch_dicts(con, "SELECT run_id, model_revision FROM row_lineage ORDER BY run_id")
    expected = [
        {"run_id": "r-new", "model_revision": COMMIT},
        {"run_id": "r-old", "model_revision": None},
    ]
    assert rows == traced == expected
