"""`blend query` is bounded in memory and time (issue 16, item 6): rows stream (the table
reads what it shows), DuckDB's memory is capped, --timeout stops a query, Ctrl-C ends it at
once with one line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blend.cli import app
from blend.store.database import Store
from blend.store.query import MEMORY_FRACTION, default_memory_limit
from tests.support.cli_text import flat

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
ENDLESS = "SELECT sum(hash(range)) AS s FROM range(100000000000)"  # hours of work


def query(store: Store, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["query", *args, "--store", str(store.root)])
    return result.exit_code, result.stdout, flat(result.stderr)


def blend_process(store: Store, *args: str, stdout: int = subprocess.PIPE) -> subprocess.Popen:
    """`blend query ARGS` in a process of its own (this checkout's code)."""
    code = "import sys; from blend.cli import main; sys.argv[0] = 'blend'; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, "query", *args, "--store", str(store.root)],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        # Ctrl-C at its default in the child, as in a terminal, even if this process ignores
        # SIGINT (a child inherits an ignored signal, and Python then never raises on it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def peak_rss_mib(store: Store, *args: str) -> tuple[float, str]:
    """Peak resident memory of `blend query ARGS` (MiB, from wait4) and its stderr."""
    process = blend_process(store, *args, stdout=subprocess.DEVNULL)
    assert process.stderr is not None
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, err
    return usage.ru_maxrss / 1024, err  # ru_maxrss is in KiB on Linux


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB: Linux")
@pytest.mark.parametrize("rows", [100_000_000, 1_000_000_000])
def test_the_table_reads_only_the_rows_it_shows(filled_store: Store, rows: int) -> None:
    # Before: range(1e8) peaked at ~935 MiB (the whole result materialised to show 50 rows),
    # range(1e9) ran out of memory. Now both stay within ~20 MiB of `SELECT 1`.
    baseline, _ = peak_rss_mib(filled_store, "SELECT 1 AS one")
    started = time.monotonic()
    peak, _ = peak_rss_mib(filled_store, f"SELECT * FROM range({rows})")
    assert peak - baseline < 100, (baseline, peak)
    assert time.monotonic() - started < 60


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB: Linux")
def test_csv_streams_every_row_without_holding_them(filled_store: Store) -> None:
    # 60k rows of 2500 characters: 150 MB of text, held two or three times over when
    # materialised (before: +690 MiB for 400 MB); streamed, a few batches at a time.
    baseline, _ = peak_rss_mib(filled_store, "SELECT 1 AS one")
    sql = "SELECT range AS i, repeat('x', 2500) AS pad FROM range(60000)"
    peak, err = peak_rss_mib(filled_store, sql, "--format", "csv")
    assert err == ""
    assert peak - baseline < 100, (baseline, peak)


def test_the_table_says_how_many_rows_it_read(filled_store: Store) -> None:
    code, out, _ = query(filled_store, "SELECT * FROM range(100000)")
    assert code == 0
    assert re.search(r"\(more than \d+ rows, 50 shown; use --format csv", " ".join(out.split()))
    code, out, _ = query(filled_store, "SELECT * FROM range(70)")
    assert "(70 rows, 50 shown;" in " ".join(out.split())  # all read: counted exactly


def test_timeout_stops_the_query_with_one_line(filled_store: Store) -> None:
    started = time.monotonic()
    code, out, err = query(filled_store, ENDLESS, "--timeout", "1")
    assert time.monotonic() - started < 15
    assert code == 1 and out == ""
    assert (
        err == "query stopped: the query ran longer than its 1 s limit and was stopped (--timeout)"
    )


def test_the_memory_cap_gives_one_line(filled_store: Store) -> None:
    # One list of 30M integers (~240 MB) cannot be spilled to disk: over a 64 MB cap it fails.
    sql = "SELECT len(list(range)) AS n FROM range(30000000)"
    code, out, err = query(filled_store, sql, "--memory-limit", "64MB")
    assert code == 1 and out == ""
    assert err.startswith("query failed: Out of Memory Error:") and "--memory-limit" in err
    assert "\n" not in err.strip() and "Possible solutions" not in err
    code, out, err = query(filled_store, sql, "--format", "csv", "--memory-limit", "1GB")
    assert code == 0 and out.splitlines() == ["n", "30000000"], err


def test_the_memory_cap_is_set_by_default(filled_store: Store) -> None:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert default_memory_limit() == f"{int(total * MEMORY_FRACTION) >> 20}MiB"
    sql = "SELECT current_setting('memory_limit') AS m"
    code, out, _ = query(filled_store, sql, "--format", "csv", "--memory-limit", "1GB")
    assert code == 0 and out.splitlines() == ["m", "953.6 MiB"]
    code, out, err = query(filled_store, "SELECT 1", "--memory-limit", "lots")
    assert code == 2 and "'lots' is not a size like 2GB" in err


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see the query run")
def test_ctrl_c_ends_the_query_at_once_with_one_line(filled_store: Store) -> None:
    process = blend_process(filled_store, ENDLESS)
    try:
        _wait_until_open(process.pid, filled_store.db_path)
        time.sleep(0.5)  # into the query itself
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert time.monotonic() - sent < 5
    assert process.returncode == 130
    assert out == "" and err == "query interrupted (Ctrl-C)\n"


def _wait_until_open(pid: int, path: Path, limit_s: float = 60) -> None:
    """Until process `pid` has `path` open (the query's database: it is running)."""
    give_up = time.monotonic() + limit_s
    while time.monotonic() < give_up:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            links = []  # an fd closed while listing: look again
        if str(path) in links:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never opened {path}")
