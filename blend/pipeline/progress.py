"""Progress of a long stage as lines of text: rows done of the total, rows/s, output tokens/s
and the time left, written at the first report, then at most every few seconds, and at the
end. `blend` writes them when its output is no terminal (blend/cli/progress.py draws a bar
otherwise); the Prefect flows write them to the flow run's log (flows/logs.py).

A reporter is a callback `(done, total)` or `(done, total, output_tokens)`: the shape of the
executor's, the profiler's and ingest's progress callbacks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]  # seconds, monotonic
PLAIN_INTERVAL_S = 5.0  # least time between two lines


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Where a stage is, and how fast it has been going since its first report."""

    done: int
    total: int
    output_tokens: int | None
    rows_per_s: float | None  # None until two reports are apart in time
    tokens_per_s: float | None
    eta_s: float | None  # seconds left at rows_per_s

    def line(self, label: str, unit: str) -> str:
        """`execute: 120/330 rows (36%), 25.3 rows/s, 3,200 out tok/s, ETA 8 s`."""
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        parts = [f"{label}: {self.done:,}/{self.total:,} {unit}{share}"]
        parts.append(f"{format_rate(self.rows_per_s)} {unit}/s")
        if self.output_tokens is not None:
            parts.append(f"{format_rate(self.tokens_per_s)} out tok/s")
        parts.append(f"ETA {format_seconds(self.eta_s)}")
        return ", ".join(parts)


class RateMeter:
    """Rows/s and output tokens/s since the first report (not since the stage began: the
    engine's start would count as slow progress), and the time left at that rate."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._first: tuple[float, int, int] | None = None  # (time, done, output tokens)

    def update(self, done: int, total: int, output_tokens: int | None = None) -> Snapshot:
        now = self._clock()
        if self._first is None:
            self._first = (now, done, output_tokens or 0)
        started, done_0, tokens_0 = self._first
        elapsed = now - started
        rows_per_s = tokens_per_s = eta_s = None
        if elapsed > 0:
            rows_per_s = (done - done_0) / elapsed
            if output_tokens is not None:
                tokens_per_s = (output_tokens - tokens_0) / elapsed
            if rows_per_s > 0:
                eta_s = max(total - done, 0) / rows_per_s
        if done >= total:
            eta_s = 0.0
        return Snapshot(done, total, output_tokens, rows_per_s, tokens_per_s, eta_s)


class ProgressLines:
    """Hands `write` a line at the first report, then at most every `interval_s`, and at the
    end (done == total); a report that says nothing new (the same rows done) writes none."""

    def __init__(
        self,
        label: str,
        write: Callable[[str], object],
        *,
        unit: str = "rows",
        interval_s: float = PLAIN_INTERVAL_S,
        clock: Clock = time.monotonic,
    ) -> None:
        self._label, self._unit, self._write_line = label, unit, write
        self._interval_s, self._clock = interval_s, clock
        self._meter = RateMeter(clock)
        self._last_line_at: float | None = None
        self._last_written: Snapshot | None = None
        self._unwritten: Snapshot | None = None

    def __call__(self, done: int, total: int, output_tokens: int | None = None) -> None:
        snapshot = self._meter.update(done, total, output_tokens)
        now = self._clock()
        news = self._last_written is None or self._last_written.done != done
        if not news:
            return  # the executor reports again at its end: no line says the same twice
        due = self._last_line_at is None or now - self._last_line_at >= self._interval_s
        if due or done >= total:
            self._write(snapshot)
            self._last_line_at = now
        else:
            self._unwritten = snapshot

    def close(self) -> None:
        """Write the last report if it has not been written."""
        if self._unwritten is not None:
            self._write(self._unwritten)

    def _write(self, snapshot: Snapshot) -> None:
        self._unwritten = None
        self._last_written = snapshot
        self._write_line(snapshot.line(self._label, self._unit))


def format_seconds(seconds: float | None) -> str:
    """`-` (unknown), `42 s`, `3 min 05 s`, `2 h 07 min`."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def format_rate(per_s: float | None) -> str:
    """`-` (unknown), `25.3`, `3,200`: one decimal below 100 per second."""
    if per_s is None:
        return "-"
    return f"{per_s:,.1f}" if per_s < 100 else f"{per_s:,.0f}"


__all__ = [
    "PLAIN_INTERVAL_S",
    "Clock",
    "ProgressLines",
    "RateMeter",
    "Snapshot",
    "format_rate",
    "format_seconds",
]
