"""Lock files held by a process (fcntl.flock), naming their holder.

A lock file holds the pid and command line of the process that holds it, so that whoever
waits can say what it waits for. The kernel releases a flock when its holder exits, killed or
not, so a lock that can be taken is never held by a dead process: "free" is exact, unlike a
pid file or a heartbeat. flock is per open file: a second open of the same file in the same
process does not share the lock (callers that nest keep their own count).

A lock file is opened without following a symbolic link (O_NOFOLLOW) and without blocking
(O_NONBLOCK: a FIFO would wait for a writer forever), then refused unless it is a regular file with
no other name: a link planted at the lock path (symbolic or hard) would make blend truncate and
overwrite its target with the holder's line. LockFileError says what is there and to remove it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

POLL_S = 0.2  # how often a waiter tries again (s)
COMMAND_CHARS = 200  # the holder's command line kept in the lock file, at most
HOLDER_BYTES = 4096  # of a lock file read to name its holder, at most
# never through a symbolic link, never waiting for a FIFO's other end
SAFE_OPEN = os.O_NOFOLLOW | os.O_NONBLOCK


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds a lock file, as it wrote itself there (pid None: unknown)."""

    pid: int | None
    command: str

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid is not None else "another process"
        return f"{who} ({self.command})" if self.command else who


class LockFileError(OSError):
    """Something other than a regular file is at a lock path (a symbolic link, a folder, a
    FIFO...): blend does not open it as its lock file; the message says what and how to fix it."""


class LockTimeoutError(TimeoutError):
    """A lock stayed held longer than the caller would wait (by `holder`)."""

    def __init__(self, message: str, holder: LockHolder) -> None:
        super().__init__(message)
        self.holder = holder


def this_process() -> str:
    """The line a holder writes: its pid and (shortened) command line."""
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""
    return f"{os.getpid()} {command[:COMMAND_CHARS]}\n"


def read_holder(fd: int) -> LockHolder:
    """The holder a lock file names (read through its fd: the path may have changed since)."""
    try:
        text = os.pread(fd, HOLDER_BYTES, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    pid_text, _, command = text.partition(" ")
    return LockHolder(int(pid_text) if pid_text.isdigit() else None, command)


def open_lock_file(path: Path, *, create: bool = True) -> int:
    """A file descriptor of the lock file at `path`, which must be a regular file.

    create: read-write, created if missing; never truncated here, so the holder's line stays
    readable to waiters. Else read-only (FileNotFoundError when missing). LockFileError for a
    symbolic link, a folder, a FIFO, a file with other names (hard links) or anything else
    that is not a regular file of its own.
    """
    flags = (os.O_RDWR | os.O_CREAT) if create else os.O_RDONLY
    try:
        fd = os.open(path, flags | SAFE_OPEN, 0o644)
    except OSError as exc:
        # ELOOP (EMLINK on BSDs): a symbolic link; EISDIR: a folder opened for writing;
        # ENXIO: a socket
        if exc.errno in (errno.ELOOP, errno.EMLINK, errno.EISDIR, errno.ENXIO):
            raise LockFileError(_not_a_lock_file(path)) from None
        raise
    found = os.fstat(fd)
    # A hard link is refused too: writing the holder's line would overwrite its other names.
    if not stat.S_ISREG(found.st_mode) or found.st_nlink > 1:
        os.close(fd)
        raise LockFileError(_not_a_lock_file(path))
    return fd


def _not_a_lock_file(path: Path) -> str:
    return (
        f"lock file {path} is {_what_is_at(path)}, not a regular file of its own: blend does "
        "not open it (it writes its pid into its lock files); remove it and run again (blend "
        "creates its lock files itself)"
    )


def _what_is_at(path: Path) -> str:
    try:
        found = os.lstat(path)
    except OSError:
        return "gone or unreadable"
    mode = found.st_mode
    if stat.S_ISREG(mode) and found.st_nlink > 1:
        return f"a hard link (one of {found.st_nlink} names of the same file)"
    if stat.S_ISLNK(mode):
        try:
            return f"a symbolic link (to {os.readlink(path)})"
        except OSError:
            return "a symbolic link"
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device file"),
        (stat.S_ISBLK, "a device file"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


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
    LockFileError when the path is not a regular file (see open_lock_file).
    """
    fd = open_lock_file(path, create=not shared)
    try:
        deadline = None if wait_s is None else time.monotonic() + wait_s
        told = False
        while not try_acquire(fd, shared=shared):
            holder = read_holder(fd)
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
    """Who holds the lock at `path`, or None when it is free (or was never created).

    LockFileError when the path is not a regular file (see open_lock_file).
    """
    try:
        fd = open_lock_file(path, create=False)
    except FileNotFoundError:
        return None
    try:
        # LOCK_SH on a read-only fd conflicts with an exclusive holder only
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_holder(fd)
        return None
    finally:
        os.close(fd)  # releases the probe's shared lock
