"""User errors of the `blend` command say what, where and the fix in one line, exit 1, with no
traceback, and before any slow work (building the demo model, importing the engine).

Commands run through `blend.cli.main` (the installed entry point, where errors are mapped),
in this process; the read-only store runs the CLI in a child process under a real read-only
mount when the machine allows one."""

from __future__ import annotations

import errno
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from blend import cli
from blend.cli import errors as cli_errors
from blend.cli import main
from blend.store.database import Store
from tests.support.children import REPO

COMMANDS = ["ingest", "profile", "plan", "execute", "run"]


def args_of(command: str, store: Path, input_file: Path) -> list[str]:
    """The arguments of `command` against `store` (execute: a plan that need not exist)."""
    extra = {
        "ingest": [str(input_file), "--dataset", "d"],
        "profile": ["--dataset", "d"],
        "plan": ["--dataset", "d"],
        "execute": ["--plan-id", "p"],
        "run": [str(input_file)],
    }[command]
    return [command, *extra, "--store", str(store)]


def blend(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str]:
    """Run `blend argv...` as the entry point does: (exit code, stdout + stderr, whitespace
    normalised)."""
    monkeypatch.setattr(sys, "argv", ["blend", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), " ".join((captured.out + captured.err).split())


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a command gets as far as resolving (building) a model."""

    def refuse(*_: Any) -> Path:
        raise AssertionError("a model was resolved before the error was found")

    monkeypatch.setattr(cli, "resolve_model", refuse)


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "hello"}\n')
    return path


def assert_one_line_error(code: int, output: str, *words: str) -> None:
    assert code == 1, output
    assert "Traceback" not in output, output
    for word in words:
        assert word in output, f"{word!r} not in {output!r}"


# --- inputs ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_model")
def test_run_with_a_missing_input_fails_before_the_store_or_a_model(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    code, said = blend(
        monkeypatch, capsys, "run", str(tmp_path / "nope.jsonl"), "--store", str(store)
    )
    assert_one_line_error(code, said, "run failed:", f"{tmp_path / 'nope.jsonl'}: no such file")
    assert not store.exists()  # nothing made


@pytest.mark.usefixtures("no_model")
@pytest.mark.parametrize("command", ["run", "ingest"])
def test_an_input_of_an_unknown_scheme(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """URIs blend reads (s3://, http://...) are tested against local servers in
    tests/ingest/test_remote_inputs.py."""
    url = "nosuch://bucket/x.jsonl"
    argv = [command, url, "--store", str(tmp_path / "store")]
    if command == "ingest":
        argv += ["--dataset", "d"]
    code, said = blend(monkeypatch, capsys, *argv)
    assert_one_line_error(code, said, f"{url}: unknown URI scheme nosuch://")
    assert not (tmp_path / "store").exists()


@pytest.mark.usefixtures("no_model")
@pytest.mark.parametrize("command", ["run", "ingest"])
def test_an_input_that_is_a_loop_of_links(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop.name)
    argv = [command, str(loop), "--store", str(tmp_path / "store")]
    if command == "ingest":
        argv += ["--dataset", "d"]
    code, said = blend(monkeypatch, capsys, *argv)
    assert_one_line_error(code, said, f"{loop}: a loop of symbolic links", "point it at")


# --- the store's database ---------------------------------------------------------------------


def damage(db_path: Path, kind: str) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "directory":
        db_path.mkdir()
    elif kind == "random bytes":
        db_path.write_bytes(os.urandom(64 << 10))
    elif kind == "empty":
        db_path.write_bytes(b"")


@pytest.mark.usefixtures("no_model")
@pytest.mark.parametrize("kind", ["random bytes", "empty", "directory"])
@pytest.mark.parametrize("command", COMMANDS)
def test_a_damaged_database_is_named_with_what_to_do(
    command: str,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    prompts: Path,
) -> None:
    store = tmp_path / "store"
    damage(store / "blend.duckdb", kind)
    code, said = blend(monkeypatch, capsys, *args_of(command, store, prompts))
    what = "is a directory" if kind == "directory" else "is not a DuckDB database"
    assert_one_line_error(code, said, f"{store / 'blend.duckdb'} {what}", "move it")


def test_damage_past_the_header_is_told_by_duckdb_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    prompts: Path,
) -> None:
    """A file with DuckDB's magic bytes passes the quick check; DuckDB's own error is mapped."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "blend.duckdb").write_bytes(os.urandom(8) + b"DUCK" + os.urandom(64 << 10))
    code, said = blend(monkeypatch, capsys, *args_of("ingest", store, prompts))
    assert_one_line_error(code, said, f"{store / 'blend.duckdb'} is not a DuckDB database")


# --- plans and results folders ----------------------------------------------------------------


@pytest.mark.usefixtures("no_model")
def test_execute_of_an_unknown_plan_fails_before_a_model_is_built(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    code, said = blend(
        monkeypatch, capsys, "execute", "--plan-id", "nosuchplan", "--store", str(store)
    )
    assert_one_line_error(code, said, "no plan 'nosuchplan'", "run `blend plan` first")


def seed_plan(store: Store, plan_id: str, dataset: str) -> None:
    with store.connect(views=False) as con:
        con.execute(
            "INSERT INTO plans (plan_id, dataset, snapshot, planner, tokenizer_sha256, "
            "created_at, params_json, n_requests, n_batches, plan_seconds) "
            "VALUES (?, ?, 1, 'dfs', 'x', now(), '{}', 0, 0, 0)",
            [plan_id, dataset],
        )


@pytest.mark.usefixtures("no_model")
@pytest.mark.parametrize("target", ["another dataset's folder", "outside the store"])
def test_a_results_folder_planted_as_a_link_is_refused(
    target: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "store")
    seed_plan(store, "p", "d")
    inside = target.startswith("another")
    pointed = store.results_dir / "dataset=other" if inside else tmp_path / "elsewhere"
    pointed.mkdir(parents=True)
    store.results_dir.mkdir(exist_ok=True)
    link = store.results_dir / "dataset=d"
    link.symlink_to(pointed)
    before = sorted(pointed.iterdir())
    code, said = blend(monkeypatch, capsys, "execute", "--plan-id", "p", "--store", str(store.root))
    assert_one_line_error(code, said, f"{link} is a symbolic link", "remove the link")
    assert sorted(pointed.iterdir()) == before  # nothing written through it


def test_a_run_folder_planted_as_a_link_is_refused(tmp_path: Path) -> None:
    from blend.store.results import ResultsFolderError, run_dir

    results = tmp_path / "results"
    (results / "dataset=d").mkdir(parents=True)
    (results / "dataset=d" / "run_id=r1").symlink_to(tmp_path)
    with pytest.raises(ResultsFolderError, match="run_id=r1 is a symbolic link"):
        run_dir(results, "d", "r1")
    assert run_dir(results, "d", "r2") == results / "dataset=d" / "run_id=r2"


# --- a read-only store -------------------------------------------------------------------------


def read_only_mounts_work() -> bool:
    """Whether this machine lets an unprivileged user namespace mount (unshare -rm)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o ro tmpfs /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


_READ_ONLY = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'


@pytest.mark.skipif(not read_only_mounts_work(), reason="no user namespaces to mount in")
@pytest.mark.parametrize(
    "argv",
    [
        ["profile", "--dataset", "d"],
        ["plan", "--dataset", "d"],
        ["execute", "--plan-id", "p"],
        ["run"],
        ["run", "INPUT"],
        ["ingest", "INPUT", "--dataset", "d"],
    ],
    ids=["profile", "plan", "execute", "run demo", "run file", "ingest"],
)
def test_a_read_only_store_is_one_line_even_as_root(
    argv: list[str], tmp_path: Path, prompts: Path
) -> None:
    """A real read-only file system (EROFS), which root cannot write either: the store is
    bind-mounted read-only in a private mount namespace of the child."""
    store = Store.open(tmp_path / "store")
    with store.connect(views=False):
        pass  # a store as a previous stage left it
    before = sorted(p.name for p in store.root.iterdir())
    command = [a if a != "INPUT" else str(prompts) for a in argv]
    done = subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            _READ_ONLY,
            str(store.root),
            sys.executable,
            "-m",
            "blend.cli",
            *command,
            "--store",
            str(store.root),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    said = " ".join(done.stderr.split())
    assert_one_line_error(done.returncode, said, f"store {store.root} is not writable")
    assert sorted(p.name for p in store.root.iterdir()) == before


@pytest.mark.usefixtures("no_model")
def test_a_read_only_store_simulated(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Where no read-only mount can be made, os.access answers for the store as a read-only
    file system would (this test patches it: root passes permission checks)."""
    store = tmp_path / "store"
    store.mkdir()
    access = os.access

    def read_only(path: Any, mode: int, **kwargs: Any) -> bool:
        if mode & os.W_OK and Path(path).is_relative_to(store):
            return False
        return access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", read_only)
    code, said = blend(monkeypatch, capsys, "run", "--store", str(store))
    assert_one_line_error(code, said, f"store {store} is not writable")
    assert not (store / "inputs").exists()  # the demo input was not written first


def test_an_os_error_of_the_store_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """EROFS raised where a stage writes (simulated: the stage is patched to raise it)."""
    part = tmp_path / "store" / "tmp" / "profile-tokens.parquet"

    def erofs(_: Any) -> Store:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(part))

    monkeypatch.setattr(cli, "writable_store", erofs)
    code, said = blend(monkeypatch, capsys, "profile", "--dataset", "d")
    assert_one_line_error(code, said, f"{part}: read-only file system", "--store")


@pytest.mark.parametrize(
    ("number", "words"),
    [(errno.EACCES, "permission denied"), (errno.ENOSPC, "free space"), (errno.EROFS, "read-only")],
)
def test_os_errors_a_user_fixes_are_mapped(number: int, words: str) -> None:
    message = cli_errors.one_line(OSError(number, os.strerror(number), "/s/blend.duckdb"))
    assert message is not None and message.startswith("/s/blend.duckdb: ") and words in message


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(_: Any) -> Store:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "writable_store", bug)
    monkeypatch.setattr(sys, "argv", ["blend", "profile", "--dataset", "d"])
    with pytest.raises(RuntimeError, match="a bug"):
        main()
    assert cli_errors.one_line(OSError(errno.EINVAL, "invalid")) is None


def test_every_user_error_named_exists() -> None:
    for module_name, class_name in cli_errors._USER_ERRORS:
        error = getattr(importlib.import_module(module_name), class_name)
        assert issubclass(error, Exception)
