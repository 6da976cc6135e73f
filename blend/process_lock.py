"""Lock files held by a process (fcntl.flock), naming their holder.

A lock file holds the pid and command line of the process that holds it, so that whoever
waits can say what it waits for. The kernel releases a flock when its holder exits, killed or
not, so a lock that can be taken is never held by a dead process: "free" is exact, unlike a
pid file or a heartbeat. flock is per open file: a second open of the same file in the same
process does not share the lock (callers that nest keep their own count).
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

POLL_S = 0.2  # how often a waiter tries again (s)
COMMAND_CHARS = 200  # the holder's command line kept in the lock file, at most


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds a lock file, as it wrote itself there (pid None: unknown)."""

    pid: int | None
    command: str

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid is not None else "another process"
        return f"{who} ({self.command})" if self.command else who


class LockTimeoutError(TimeoutError):
    """A lock stayed held longer than the caller would wait (by `holder`)."""

    def __init__(self, message: str, holder: LockHolder) -> None:
        super().__init__(message)
        self.holder = holder


def this_process() -> str:
    """The line a holder writes: its pid and (shortened) command line."""
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""
    return f"{os.getpid()} {command[:COMMAND_CHARS]}\n"


def read_holder(path: Path) -> LockHolder:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        text = ""
    pid_text, _, command = text.partition(" ")
    return LockHolder(int(pid_text) if pid_text.isdigit() else None, command)


def open_lock_file(path: Path) -> int:
    """A file descriptor of the lock file (created if missing); never truncates it, so
    the holder's line stays readable to waiters."""
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def try_acquire(fd: int, *, shared: bool = False) -> bool:
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def write_holder(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, this_process().encode(), 0)


def acquire(
    path: Path,
    *,
    wait_s: float | None,
    on_wait: Callable[[LockHolder], None] | None = None,
    shared: bool = False,
) -> int:
    """Take the lock at `path`; returns its fd (close it to release).

    Busy: calls `on_wait(holder)` once, then waits up to `wait_s` seconds (None: without
    limit; 0: not at all) and raises LockTimeoutError naming the holder.
    shared: a shared hold (many at once, none beside an exclusive holder) on an existing
    lock file, opened read-only and not written (FileNotFoundError when there is none).
    """
    fd = os.open(path, os.O_RDONLY) if shared else open_lock_file(path)
    try:
        deadline = None if wait_s is None else time.monotonic() + wait_s
        told = False
        while not try_acquire(fd, shared=shared):
            holder = read_holder(path)
            if deadline is not None and time.monotonic() >= deadline:
                raise LockTimeoutError(
                    f"{path} is held by {holder.describe()}"
                    + (f" (waited {wait_s:g} s)" if wait_s else ""),
                    holder,
                )
            if on_wait is not None and not told:
                on_wait(holder)
                told = True
            time.sleep(POLL_S)
        if not shared:
            write_holder(fd)
        return fd
    except BaseException:
        os.close(fd)
        raise


def holder_if_held(path: Path) -> LockHolder | None:
    """Who holds the lock at `path`, or None when it is free (or was never created)."""
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        # LOCK_SH on a read-only fd conflicts with an exclusive holder only
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_holder(path)
        return None
    finally:
        os.close(fd)  # releases the probe's shared lock
