"""Lock paths that hold something else than blend's lock file: a symbolic link (blend used to
truncate and overwrite its target), a hard link, a folder or a FIFO (a traceback, or a
`blend query` that hung). Each is refused with one line naming the path and what is there,
for the store's writer lock (exclusive and shared holds) and a run's lock."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from blend.demo.dataset import DemoSize, write_demo_dataset
from blend.engines.base import EngineConfig
from blend.engines.tokenize import tokenizer_sha256
from blend.execute.stage import ExecuteError, execute_plan
from blend.plan.stage import PlanOptions, plan_dataset
from blend.store.database import Store
from blend.store.process_lock import LockFileError
from blend.store.results import run_dir
from blend.store.runs import acquire_run_lock, run_is_alive
from blend.store.store_lock import LOCK_NAME
from tests.support.children import REPO
from tests.support.fake_engine import FakeEngine
from tests.support.seeds import seed_store

CLI_TIMEOUT_S = 120  # a command that hangs on a FIFO fails the test instead of CI
TARGET_TEXT = b"precious bytes that blend must not touch\n"


def blend_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "blend.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=CLI_TIMEOUT_S,
    )


def plant_symlink(lock: Path, tmp_path: Path) -> Path:
    target = tmp_path / "target.txt"
    target.write_bytes(TARGET_TEXT)
    lock.unlink(missing_ok=True)
    lock.symlink_to(target)
    return target


def plant_hard_link(lock: Path, tmp_path: Path) -> Path:
    target = tmp_path / "target.txt"
    target.write_bytes(TARGET_TEXT)
    lock.unlink(missing_ok=True)
    os.link(target, lock)
    return target


def plant_folder(lock: Path, tmp_path: Path) -> None:
    lock.unlink(missing_ok=True)
    lock.mkdir()


def plant_fifo(lock: Path, tmp_path: Path) -> None:
    lock.unlink(missing_ok=True)
    os.mkfifo(lock)


PLANTED: dict[str, tuple[Callable[[Path, Path], object], str]] = {
    "symlink": (plant_symlink, "is a symbolic link (to "),
    "hard link": (plant_hard_link, "is a hard link (one of 2 names"),
    "folder": (plant_folder, "is a folder"),
    "fifo": (plant_fifo, "is a named pipe (FIFO)"),
}


def one_line_refusal(done: subprocess.CompletedProcess[str], lock: Path, what: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    said = " ".join(done.stderr.split())  # however the terminal would wrap it
    assert f"lock file {lock} {what}" in said
    assert "remove it and run again" in said


@pytest.mark.parametrize("kind", PLANTED)
def test_ingest_refuses_a_writer_lock_that_is_not_a_regular_file(
    kind: str, store: Store, tmp_path: Path
) -> None:
    plant, what = PLANTED[kind]
    lock = store.root / LOCK_NAME
    target = plant(lock, tmp_path)
    source = write_demo_dataset(tmp_path / "in.jsonl", DemoSize.small())
    done = blend_cli("ingest", str(source), "--dataset", "d", "--store", str(store.root))
    one_line_refusal(done, lock, what)
    if isinstance(target, Path):
        assert target.read_bytes() == TARGET_TEXT  # not truncated, not overwritten
    assert not store.db_path.exists()  # refused before the database was opened


@pytest.mark.parametrize("kind", PLANTED)
def test_query_refuses_a_writer_lock_that_is_not_a_regular_file(
    kind: str, store: Store, tmp_path: Path
) -> None:
    """The shared (read-only) hold: a FIFO used to make `blend query` wait forever."""
    with store.connect(views=False):
        pass  # the database exists: the query gets as far as the lock
    plant, what = PLANTED[kind]
    lock = store.root / LOCK_NAME
    target = plant(lock, tmp_path)
    done = blend_cli("query", "SELECT count(*) FROM runs", "--store", str(store.root))
    one_line_refusal(done, lock, what)
    if isinstance(target, Path):
        assert target.read_bytes() == TARGET_TEXT


def test_a_dangling_symlink_is_refused_and_not_created_through(
    store: Store, tmp_path: Path
) -> None:
    lock = store.root / LOCK_NAME
    missing = tmp_path / "elsewhere" / "created-by-blend"
    missing.parent.mkdir()
    lock.symlink_to(missing)
    with pytest.raises(LockFileError, match="is a symbolic link"), store.connect(views=False):
        pass
    assert not missing.exists()


@pytest.mark.parametrize("kind", PLANTED)
def test_run_locks_are_refused_when_not_regular_files(kind: str, tmp_path: Path) -> None:
    plant, what = PLANTED[kind]
    folder = tmp_path / "results" / "dataset=d" / "run_id=r1"
    folder.mkdir(parents=True)
    lock = folder / ".lock"
    target = plant(lock, tmp_path)
    with pytest.raises(LockFileError, match=re.escape(f"lock file {lock} {what}")):
        acquire_run_lock(folder, "r1")  # the executing process's hold
    with pytest.raises(LockFileError, match=re.escape(f"lock file {lock} {what}")):
        run_is_alive(str(folder))  # the probe that finds dead runs
    if isinstance(target, Path):
        assert target.read_bytes() == TARGET_TEXT


def test_execute_names_a_planted_run_lock_in_one_line(
    store: Store, tiny_model: Path, tmp_path: Path
) -> None:
    seed_store(store, tokenizer_sha256(tiny_model))
    options = PlanOptions(planner="dfs", warmup_fraction=0.0)
    plan = plan_dataset(store, "ds", options, model_dir=tiny_model)
    folder = run_dir(store.results_dir, "ds", "r1")
    folder.mkdir(parents=True)
    target = plant_symlink(folder / ".lock", tmp_path)
    with pytest.raises(ExecuteError, match="is a symbolic link") as refused:
        execute_plan(
            store,
            plan.plan_id,
            EngineConfig(model_dir=tiny_model),
            run_id="r1",
            engine_factory=FakeEngine,
        )
    assert "\n" not in str(refused.value)
    assert target.read_bytes() == TARGET_TEXT
    assert not list(folder.glob("part-*"))  # nothing ran


def test_an_ordinary_lock_file_still_works(store: Store) -> None:
    """The refusals do not refuse blend's own lock file: it is taken again and again."""
    for _ in range(2):
        with store.connect(views=False):
            pass
    lock = store.root / LOCK_NAME
    assert lock.is_file() and not lock.is_symlink()
    assert lock.read_text().split()[0] == str(os.getpid())
