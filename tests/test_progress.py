"""Progress reporting: plain lines off a terminal (rate, ETA, at most every few seconds), a
bar on one; and the quiet default for the libraries' own output."""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from blend.cli import app, verbosity
from blend.cli.progress import BarReporter, PlainReporter, format_seconds, progress_reporter
from blend.engines.tokenize import tokenizer_sha256
from blend.plan.stage import PlanOptions, plan_dataset
from blend.store.database import Store
from tests.support.fake_engine import FakeEngine
from tests.support.seeds import seed_store


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def plain(interval_s: float = 5.0) -> tuple[PlainReporter, io.StringIO, FakeClock]:
    out, clock = io.StringIO(), FakeClock()
    console = Console(file=out, width=200)
    return PlainReporter("execute", console, interval_s=interval_s, clock=clock), out, clock


def test_plain_lines_come_at_most_every_interval_with_rate_and_eta() -> None:
    report, out, clock = plain(interval_s=5.0)
    report(10, 100, 1_000)  # the first report: no rate yet
    clock.now += 2
    report(30, 100, 3_000)  # within the interval: not written
    clock.now += 3
    report(60, 100, 6_000)  # 5 s after the first line: 50 rows in 5 s
    report.close()
    assert out.getvalue().splitlines() == [
        "execute: 10/100 rows (10%), - rows/s, - out tok/s, ETA -",
        "execute: 60/100 rows (60%), 10.0 rows/s, 1,000 out tok/s, ETA 4 s",
    ]


def test_the_last_report_is_written_once_at_the_end() -> None:
    report, out, clock = plain(interval_s=5.0)
    report(0, 40)
    clock.now += 1
    report(20, 40)  # not due yet, kept for close()
    report.close()
    clock.now += 1
    assert out.getvalue().splitlines()[-1] == "execute: 20/40 rows (50%), 20.0 rows/s, ETA 1 s"
    finished, out, clock = plain(interval_s=5.0)
    finished(0, 40)
    clock.now += 4
    finished(40, 40)  # finishing is written at once, not again when reported again
    clock.now += 1
    finished(40, 40)
    finished.close()
    assert out.getvalue().splitlines()[1:] == ["execute: 40/40 rows (100%), 10.0 rows/s, ETA 0 s"]


def test_a_terminal_gets_a_bar_and_a_pipe_gets_lines() -> None:
    with progress_reporter("execute", Console(file=io.StringIO(), force_terminal=True)) as bar:
        assert isinstance(bar, BarReporter)
        bar(1, 2, 10)
    with progress_reporter("execute", Console(file=io.StringIO())) as lines:
        assert isinstance(lines, PlainReporter)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.4, "0 s"), (59.4, "59 s"), (185, "3 min 05 s"), (7620, "2 h 07 min")],
)
def test_format_seconds(seconds: float | None, text: str) -> None:
    assert format_seconds(seconds) == text


@pytest.fixture
def unset_verbosity(monkeypatch: pytest.MonkeyPatch) -> None:
    """No verbosity variable set (tests/conftest.py restores what configure() changes)."""
    for name in {**verbosity.QUIET_ENV, **verbosity.VERBOSE_ENV}:
        monkeypatch.delenv(name, raising=False)


def test_quiet_hides_the_libraries_warnings_but_not_blends(
    unset_verbosity: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_CPP_LOG_LEVEL", "INFO")  # the user's own choice stays
    verbosity.configure(verbose=False)
    assert os.environ["VLLM_LOGGING_LEVEL"] == "ERROR"
    assert os.environ["TORCH_CPP_LOG_LEVEL"] == "INFO"
    assert not logging.getLogger("torch").isEnabledFor(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:  # pytest restores filters after
        warnings.warn_explicit("noise", FutureWarning, "dispatcher.py", 1, module="vllm.x")
        warnings.warn_explicit("ours", UserWarning, "plan.py", 1, module="blend.plan.stage")
    assert [str(w.message) for w in caught] == ["ours"]


def test_verbose_lets_the_libraries_warnings_through(unset_verbosity: None) -> None:
    verbosity.configure(verbose=True)
    assert os.environ["VLLM_LOGGING_LEVEL"] == "WARNING"
    assert "TORCH_CPP_LOG_LEVEL" not in os.environ
    assert logging.getLogger("torch").level != logging.ERROR


def test_cli_execute_off_a_terminal_prints_progress_lines(
    store: Store,
    tiny_model: Path,
    unset_verbosity: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import blend.engines.vllm_engine

    seed_store(store, tokenizer_sha256(tiny_model))
    options = PlanOptions(planner="dfs", warmup_fraction=0.0)
    plan = plan_dataset(store, "ds", options, model_dir=tiny_model)
    monkeypatch.setattr(blend.engines.vllm_engine, "VllmEngine", FakeEngine)
    args = ["execute", "--plan-id", plan.plan_id, "--model", str(tiny_model)]
    result = CliRunner().invoke(app, [*args, "--store", str(store.root)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("execute: ")]
    assert lines, result.output
    pattern = r"execute: \d+/5 rows \(\d+%\), ([\d.,]+|-) rows/s, [\d.,-]+ out tok/s, ETA "
    assert all(re.match(pattern, line) for line in lines), lines
    assert re.match(r"execute: 5/5 rows \(100%\), [\d.,]+ rows/s, .*, ETA 0 s$", lines[-1])
    assert os.environ["VLLM_LOGGING_LEVEL"] == "ERROR"  # quiet unless --verbose
