"""Linux Landlock: take away a thread's right to write files or open network connections.

`blend query` runs DuckDB in a thread restricted here, so that no SQL whatever can write a
file or download anything: the kernel refuses it (EACCES), below DuckDB and its statement
types, for root too. The restriction covers the calling thread and every thread it starts
afterwards (DuckDB's workers, when the database is opened from that thread); it cannot be
lifted, so the thread must be one made for the purpose. Reading stays allowed (DuckDB's own
settings limit what a query may read).

Landlock needs Linux 5.13+ with the LSM enabled; `abi_version()` is 0 where it is missing
(other systems, older kernels, some container sandboxes), and the caller decides what to do.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

_SYS_CREATE_RULESET = 444  # the same number on every Linux architecture (unified syscalls)
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Write-type file-system rights, by the ABI version that introduced them (linux/landlock.h).
# Handling a right without granting it anywhere denies it everywhere.
_FS_WRITE_RIGHTS_BY_ABI = {
    1: (
        (1 << 1)  # WRITE_FILE
        | (1 << 4)  # REMOVE_DIR
        | (1 << 5)  # REMOVE_FILE
        | (1 << 6)  # MAKE_CHAR
        | (1 << 7)  # MAKE_DIR
        | (1 << 8)  # MAKE_REG
        | (1 << 9)  # MAKE_SOCK
        | (1 << 10)  # MAKE_FIFO
        | (1 << 11)  # MAKE_BLOCK
        | (1 << 12)  # MAKE_SYM
    ),
    2: 1 << 13,  # REFER (link / rename across folders)
    3: 1 << 14,  # TRUNCATE
}
_NET_RIGHTS_ABI = 4
_NET_BIND_AND_CONNECT_TCP = (1 << 0) | (1 << 1)


class LandlockError(OSError):
    """The kernel refused to set up the restriction (the message says which step)."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in linux/landlock.h
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


@cache
def abi_version() -> int:
    """The kernel's Landlock ABI version, or 0 where Landlock cannot be used."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        version = _libc().syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    except (AttributeError, OSError):
        return 0
    return max(int(version), 0)


def write_rights(abi: int) -> int:
    """The write-type file rights that Landlock ABI `abi` knows (a bit mask)."""
    return sum(bits for since, bits in _FS_WRITE_RIGHTS_BY_ABI.items() if abi >= since)


def deny_writes_in_this_thread(writable: Sequence[Path] = ()) -> int:
    """From now on this thread, and the threads it starts, write no file outside `writable`
    (folders) and open no TCP connection. Returns the ABI version used.

    Raises LandlockError where Landlock is unavailable or refuses; irreversible otherwise.
    """
    abi = abi_version()
    if abi < 1:
        raise LandlockError("Landlock is not available on this system")
    libc = _libc()
    rights = write_rights(abi)
    attr = _RulesetAttr(rights, _NET_BIND_AND_CONNECT_TCP if abi >= _NET_RIGHTS_ABI else 0, 0)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        raise _error("landlock_create_ruleset")
    try:
        for folder in writable:
            _allow_beneath(ruleset, folder, rights)
        # Required of a thread without CAP_SYS_ADMIN; affects this thread only.
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise _error("prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
            raise _error("landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def _allow_beneath(ruleset: int, folder: Path, rights: int) -> None:
    fd = os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        rule = _PathBeneathAttr(rights, fd)
        if _libc().syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0):
            raise _error(f"landlock_add_rule({folder})")
    finally:
        os.close(fd)


def _error(step: str) -> LandlockError:
    errno = ctypes.get_errno()
    return LandlockError(errno, f"{step} failed: {os.strerror(errno)}")
