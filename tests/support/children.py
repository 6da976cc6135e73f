"""Child processes for the fault tests (tests/support/fault_child.py), to run beside a test
or kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINE_TIMEOUT_S = 120.0  # a child that prints nothing for this long has failed


class Child:
    """A `python -m tests.support.fault_child ...` process, its stdout read line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fault_child", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        )
        self.lines: list[str] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for(self, prefix: str, at_least: int | None = None) -> str:
        """Read stdout until a line starts with `prefix` (and, for `progress N`, N >=
        `at_least`); fails when the child exits first."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if not line.startswith(prefix):
                continue
            if at_least is None or int(line.split()[1]) >= at_least:
                return line.strip()
        raise AssertionError(
            f"child exited ({self.proc.wait()}) before {prefix!r}:\n"
            + "\n".join(self.lines)
            + (self.proc.stderr.read() if self.proc.stderr else "")
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=LINE_TIMEOUT_S) == -signal.SIGKILL

    def finish(self) -> tuple[str, str]:
        """Wait for a normal exit; returns (stdout rest, stderr); fails on a non-zero exit."""
        out, err = self.proc.communicate(timeout=LINE_TIMEOUT_S)
        assert self.proc.returncode == 0, f"child failed ({self.proc.returncode}):\n{out}{err}"
        return out, err
