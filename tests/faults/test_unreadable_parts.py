"""One unreadable Parquet part (truncated, overwritten) used to block the whole store: every
query failed ("No magic bytes found"), `blend run` and `blend profile` of another dataset
crashed. Now commands that write move it to <store>/quarantine/ (saying so), `blend query`
leaves it out, `blend verify [--repair]` reports and moves, and the next run redoes the
requests whose rows it held: exactly one row each, nothing deleted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from blend.engines.base import EngineConfig
from blend.engines.supervisor import EngineFailedError, RestartPolicy
from blend.engines.tokenize import tokenizer_sha256
from blend.execute.stage import ExecuteOptions, execute_plan
from blend.pipeline.chain import PipelineOptions, PipelineReport, run_pipeline
from blend.plan.stage import PlanOptions, plan_dataset
from blend.store import database as store_module
from blend.store.database import Store, UnreadablePartError, fetch_dicts
from blend.store.results import (
    QUARANTINE_DIR,
    QUARANTINE_RECORD,
    UnreadablePart,
    finished_parts,
    part_files,
    quarantine_parts,
)
from tests.support.children import REPO
from tests.support.fake_engine import FakeEngine
from tests.support.fault_child import fake_engine_stages
from tests.support.seeds import PROMPTS, seed_store

CLI_TIMEOUT_S = 120


def blend_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blend.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=CLI_TIMEOUT_S,
    )


def run_demo(store: Store, input_path: Path, model: Path, dataset: str = "d") -> PipelineReport:
    """`blend run` in process (incremental, resuming), the fake engine, a part every 8 rows."""
    return run_pipeline(
        store,
        EngineConfig(model_dir=model),
        PipelineOptions(
            input_path=input_path,
            dataset=dataset,
            plan=PlanOptions(planner="dfs", warmup_fraction=0.0),
            execute=ExecuteOptions(flush_rows=8),
        ),
        run_stage=fake_engine_stages(0.0),
    )


def truncate(part: Path) -> set[str]:
    """Cut the part to 100 bytes (`truncate -s 100`); returns the request ids it held."""
    held = set(pq.read_table(part, columns=["request_id"]).column(0).to_pylist())
    os.truncate(part, 100)
    return held


def rows_per_request(store: Store, dataset: str = "d") -> dict[str, int]:
    with store.connect() as con:
        rows = fetch_dicts(
            con,
            "SELECT request_id, count(*) AS n FROM results WHERE dataset = $d GROUP BY ALL",
            {"d": dataset},
        )
    return {r["request_id"]: r["n"] for r in rows}


def said(text: str) -> str:
    return " ".join(text.split())  # however a terminal would wrap it


@pytest.fixture
def damaged(
    store: Store, tiny_model: Path, small_inputs: list[Path]
) -> tuple[Store, Path, set[str], int]:
    """A store whose completed run of dataset `d` has its second part truncated: (store, the
    part, the request ids it held, rows of the run)."""
    first = run_demo(store, small_inputs[0], tiny_model)
    assert first.run is not None and first.run.status == "completed"
    parts = finished_parts(first.run.results_dir)
    assert len(parts) >= 3
    held = truncate(parts[1])
    return store, parts[1], held, first.run.n_requests


def test_the_next_run_quarantines_the_part_and_redoes_its_requests_once(
    damaged: tuple[Store, Path, set[str], int],
    tiny_model: Path,
    small_inputs: list[Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    store, part, held, n_rows = damaged
    again = run_demo(store, small_inputs[0], tiny_model)
    assert again.plan.n_requests == len(held)  # exactly the requests the part held
    assert again.run is not None and again.run.n_requests == len(held)
    counts = rows_per_request(store)
    assert len(counts) == n_rows and set(counts.values()) == {1}  # none lost, none twice
    moved_to = store.root / QUARANTINE_DIR / part.relative_to(store.root)
    assert not part.exists() and moved_to.stat().st_size == 100  # moved, not deleted
    record = (store.root / QUARANTINE_DIR / QUARANTINE_RECORD).read_bytes().splitlines()
    line = orjson.loads(record[0])
    assert len(record) == 1
    assert line["from"] == part.relative_to(store.root).as_posix()
    assert line["to"] == moved_to.relative_to(store.root).as_posix()
    assert (line["dataset"], line["size_bytes"]) == ("d", 100)
    assert line["run_id"] == part.parent.name.removeprefix("run_id=")
    assert "magic bytes" in line["reason"]
    err = said(capsys.readouterr().err)
    assert f"result part {part} cannot be read" in err
    assert f"moved it to {moved_to}" in err and "`blend run`, `blend plan`) runs them" in err


def test_a_resumed_run_redoes_the_rows_of_its_own_unreadable_part(
    store: Store, tiny_model: Path
) -> None:
    seed_store(store, tokenizer_sha256(tiny_model))
    plan = plan_dataset(
        store, "ds", PlanOptions(planner="dfs", warmup_fraction=0.0), model_dir=tiny_model
    )
    config = EngineConfig(model_dir=tiny_model)
    options = ExecuteOptions(flush_rows=1, restart_policy=RestartPolicy(max_restarts=0))
    with pytest.raises(EngineFailedError):
        execute_plan(
            store,
            plan.plan_id,
            config,
            run_id="r1",
            options=options,
            engine_factory=lambda c: FakeEngine(c, crash_after=3),
        )
    parts = finished_parts(store.results_dir / "dataset=ds" / "run_id=r1")
    assert len(parts) == 3
    held = truncate(parts[0])
    resumed = FakeEngine(config)
    report = execute_plan(
        store, plan.plan_id, config, run_id="r1", engine_factory=lambda c: resumed
    )
    assert report.n_skipped == 2  # the two readable parts' rows
    assert set(resumed.seen) == held | set(PROMPTS) - {"a", "d", "b"}  # DFS: a, d, b first
    assert rows_per_request(store, "ds") == dict.fromkeys(PROMPTS, 1)
    assert report.n_requests == len(PROMPTS)


def test_a_bad_part_of_one_dataset_does_not_stop_another(
    damaged: tuple[Store, Path, set[str], int], tiny_model: Path, small_inputs: list[Path]
) -> None:
    store, part, _, _ = damaged
    done = blend_cli(
        "ingest", str(small_inputs[1]), "--dataset", "other", "--store", str(store.root)
    )
    assert done.returncode == 0, done.stderr
    done = blend_cli(
        *("profile", "--dataset", "other", "--model", str(tiny_model), "--store", str(store.root))
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert f"result part {part} cannot be read" in said(done.stderr)
    assert not part.exists()
    again = run_demo(store, small_inputs[1], tiny_model, dataset="other")
    assert again.run is not None and again.run.status == "completed"


def test_query_leaves_an_unreadable_part_out_and_moves_nothing(
    damaged: tuple[Store, Path, set[str], int],
) -> None:
    store, part, held, n_rows = damaged
    runs = blend_cli(
        "query", "SELECT count(*) AS n FROM runs", "--format", "csv", "--store", str(store.root)
    )
    assert (runs.returncode, runs.stdout.split()) == (0, ["n", "1"]), runs.stderr
    assert f"left unreadable result part {part}" in said(runs.stderr)
    assert "blend verify --repair" in said(runs.stderr)
    rows = blend_cli(
        "query", "SELECT count(*) AS n FROM results", "--format", "csv", "--store", str(store.root)
    )
    assert rows.stdout.split() == ["n", str(n_rows - len(held))]
    assert part.exists() and not (store.root / QUARANTINE_DIR).exists()


def test_verify_reports_then_repair_moves_and_records(
    damaged: tuple[Store, Path, set[str], int],
) -> None:
    store, part, _, _ = damaged
    relative = part.relative_to(store.root)
    writing = part.parent / f".tmp-{part.name}.partial"  # a part being written: never touched
    writing.write_bytes(b"half a part")
    found = blend_cli("verify", "--store", str(store.root))
    assert found.returncode == 1, found.stdout + found.stderr
    out = said(found.stdout)
    assert "1 unreadable" in out and f"unreadable: {relative}: Parquet magic bytes" in out
    assert "`blend verify --repair` moves them" in out
    assert part.exists()  # reported only

    repaired = blend_cli("verify", "--repair", "--store", str(store.root))
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert f"moved to the quarantine: {relative}" in said(repaired.stdout)
    assert (store.root / QUARANTINE_DIR / relative).is_file() and not part.exists()
    assert writing.read_bytes() == b"half a part"
    record = (store.root / QUARANTINE_DIR / QUARANTINE_RECORD).read_bytes().splitlines()
    assert [orjson.loads(r)["from"] for r in record] == [relative.as_posix()]
    assert "verify --repair" in orjson.loads(record[0])["by"]  # who moved it

    clean = blend_cli("verify", "--store", str(store.root))
    assert clean.returncode == 0
    assert "all readable" in clean.stdout and "1 part(s) were moved" in said(clean.stdout)


def test_verify_full_finds_damage_the_footer_does_not_show(
    damaged: tuple[Store, Path, set[str], int],
) -> None:
    store = damaged[0]
    store_module.verify_results(store, repair=True)  # the truncated part out of the way
    other = part_files(store.results_dir)[0]
    data = bytearray(other.read_bytes())
    data[4:68] = b"\xff" * 64  # the first page's header; the footer is intact
    other.write_bytes(bytes(data))
    assert blend_cli("verify", "--store", str(store.root)).returncode == 0
    full = blend_cli("verify", "--full", "--store", str(store.root))
    assert full.returncode == 1
    assert f"unreadable: {other.relative_to(store.root)}" in said(full.stdout)


def test_a_second_part_of_the_same_name_never_overwrites_the_first(tmp_path: Path) -> None:
    part = tmp_path / "results" / "dataset=d" / "run_id=r" / "part-00000-x.parquet"
    part.parent.mkdir(parents=True)
    destinations = []
    for text in (b"first", b"second"):
        part.write_bytes(text)
        moved = quarantine_parts(tmp_path, [UnreadablePart(part, "bad", damaged=True)])
        destinations.append(moved[0].destination)
    assert [d.read_bytes() for d in destinations] == [b"first", b"second"]
    assert destinations[1].name == destinations[0].name + ".1"


def test_a_part_the_system_cannot_read_is_not_moved_without_asking(
    damaged: tuple[Store, Path, set[str], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An I/O error or a permission may pass: commands stop with one line, verify --repair
    moves it when asked."""
    store, part, _, _ = damaged

    def io_error(paths: object, *, full: bool = False) -> list[UnreadablePart]:
        return [UnreadablePart(part, "Input/output error", damaged=False)]

    monkeypatch.setattr(store_module, "unreadable_parts", io_error)
    with pytest.raises(UnreadablePartError, match="blend verify --repair"), store.connect():
        pass
    assert part.exists()
