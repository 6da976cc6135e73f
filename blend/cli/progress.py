"""Progress of a long stage for the command line: a live bar on a terminal, and a plain line
every few seconds when the output goes to a file or a pipe (logs, CI), each with rows done of
the total, rows/s and the time left (the lines and the rates: blend/pipeline/progress.py,
which the Prefect flows' log shares).

A reporter is a callback `(done, total)` or `(done, total, output_tokens)`: the shape of the
executor's, the profiler's and ingest's progress callbacks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console

from blend.pipeline.progress import (
    PLAIN_INTERVAL_S,
    Clock,
    ProgressLines,
    RateMeter,
    format_rate,
    format_seconds,
)


class Reporter(Protocol):
    def __call__(self, done: int, total: int, output_tokens: int | None = None) -> None: ...


class PlainReporter(ProgressLines):
    """Writes a line at the first report, then at most every `interval_s`, and at the end."""

    def __init__(
        self,
        label: str,
        console: Console,
        *,
        unit: str = "rows",
        interval_s: float = PLAIN_INTERVAL_S,
        clock: Clock = time.monotonic,
    ) -> None:
        def write(line: str) -> None:
            console.print(line, markup=False, highlight=False)

        super().__init__(label, write, unit=unit, interval_s=interval_s, clock=clock)


class BarReporter:
    """A rich progress bar (transient: it leaves no trace once the stage is done)."""

    def __init__(self, label: str, console: Console, *, unit: str = "rows") -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._meter = RateMeter()
        self._progress = Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rates]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=console,
            transient=True,
        )
        self._unit = unit
        self._progress.start()
        self._task = self._progress.add_task(label, total=None, rates="", eta="-")

    def __call__(self, done: int, total: int, output_tokens: int | None = None) -> None:
        s = self._meter.update(done, total, output_tokens)
        rates = f"{format_rate(s.rows_per_s)} {self._unit}/s"
        if output_tokens is not None:
            rates += f", {format_rate(s.tokens_per_s)} out tok/s"
        eta = format_seconds(s.eta_s)
        self._progress.update(self._task, completed=done, total=total, rates=rates, eta=eta)

    def close(self) -> None:
        self._progress.stop()


@contextmanager
def progress_reporter(
    label: str, console: Console, *, unit: str = "rows", interval_s: float = PLAIN_INTERVAL_S
) -> Iterator[Reporter]:
    """A bar when `console` is a terminal, else plain lines at most every `interval_s`."""
    reporter: PlainReporter | BarReporter
    if console.is_terminal:
        reporter = BarReporter(label, console, unit=unit)
    else:
        reporter = PlainReporter(label, console, unit=unit, interval_s=interval_s)
    try:
        yield reporter
    finally:
        reporter.close()


__all__ = ["BarReporter", "PlainReporter", "Reporter", "format_seconds", "progress_reporter"]
