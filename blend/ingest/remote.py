"""Inputs named by URI (s3://, gs://, hf://, https://...): checked before the store is
touched (open_remote), then copied once into the store and ingested as a local file (spooled).

Why one spooled copy rather than reading the object twice through its filesystem: ingest
reads its input more than twice - the hash pass, the format peek, the staging pass, and
random reads of Parquet footers and row groups and of the source text of duplicate-id rows
(RawReader). Over an object store each of those is another download (or many ranged GETs),
and the object may be replaced between them, which would break the ingest's invariant that
the rows written are the bytes hashed. One streamed copy pins the content: it is hashed and
its lines counted on the way (CHUNK_BYTES at a time: memory is bounded by one chunk whatever
the object's size, 10M lines included), and every later pass reads the same local bytes at
disk speed through the same code as a local input. The price is the object's size on the
store's disk while the ingest runs (checked before the download starts).

Spool files live in `<store>/tmp/`: `input-<uuid>.part` while the object streams in, renamed
to `input-<uuid><suffix>` once complete (the object's suffix names the format), removed when
the ingest ends, whichever way it ends. The process holds a flock on its spool file, so a
file that nobody holds and older than STALE_S was left by a killed process: the next remote
ingest removes it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TypeVar

import pyarrow.fs as pafs

from blend.ingest.formats import format_by_suffix
from blend.ingest.readers import Digester, FileDigest
from blend.ingest.records import IngestError
from blend.store.uris import (
    Remote,
    UriError,
    base_name,
    failure,
    file_info,
    is_remote_failure,
    missing,
    open_uri,
)

CHUNK_BYTES = 8 << 20  # read per request: fewer round trips than 1 MiB, still small
STALE_S = 60.0  # a spool file nobody holds, older than this (s), was left by a killed ingest
_PREFIX = "input-"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RemoteInput:
    """An object checked to exist and hold bytes, not yet read."""

    remote: Remote
    name: str  # the object's base name ("prompts.jsonl")
    size: int | None  # bytes (None: the server does not say)
    mtime: datetime | None  # last modified, when the server says

    @property
    def shown(self) -> str:
        """The URI without credentials: for messages and `datasets.source_uri`."""
        return self.remote.shown


@dataclass(frozen=True, slots=True)
class Spooled:
    """The object copied into the store."""

    path: Path  # <store>/tmp/input-<uuid><suffix>
    digest: FileDigest


def open_remote(uri: str) -> RemoteInput:
    """The object at `uri`, else IngestError in one line: unknown scheme, a package to install,
    access denied, no such bucket or object, a folder, an empty object, an unknown format."""
    try:
        remote = open_uri(uri)
        info = file_info(remote)
        if info.type == pafs.FileType.NotFound:
            raise UriError(missing(remote))
    except UriError as error:
        raise IngestError(str(error)) from None
    if info.type == pafs.FileType.Directory:
        raise IngestError(f"{remote.shown}: a folder (a prefix of objects), not a file")
    name = base_name(uri)
    format_by_suffix(name, remote.shown)  # before anything is downloaded
    if info.size == 0:
        raise IngestError(f"{remote.shown}: the object is empty (0 bytes)")
    return RemoteInput(remote, name, info.size, info.mtime)


@contextmanager
def spooled(source: RemoteInput, folder: Path) -> Iterator[Spooled]:
    """Copy the object into `folder` (see the module docstring); removed on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder)
    _require_space(source, folder)
    token = f"{_PREFIX}{uuid.uuid4().hex}"
    partial = folder / f"{token}.part"
    final = folder / f"{token}{PurePosixPath(source.name).suffix.lower()}"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # for the file's life: it is not stale
        digest = _copy(source, fd)
        os.rename(partial, final)
        yield Spooled(final, digest)
    finally:
        partial.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
        os.close(fd)


def _copy(source: RemoteInput, fd: int) -> FileDigest:
    """Stream the object into `fd`, hashing it; IngestError when it changed meanwhile."""
    remote = source.remote
    digester = Digester()
    stream = _remote_call(
        remote, lambda: remote.filesystem.open_input_stream(remote.path, compression=None)
    )
    with stream:
        while chunk := _remote_call(remote, lambda: stream.read(CHUNK_BYTES)):
            digester.update(chunk)
            _write_all(fd, chunk)  # a full disk is an OSError the CLI says in one line
    after = _remote_call(remote, lambda: file_info(remote))
    same_size = after.size == digester.n_bytes and source.size in (None, digester.n_bytes)
    if not same_size or after.mtime != source.mtime:
        raise IngestError(
            f"{remote.shown}: the object changed while it was being downloaded; nothing was "
            "written, run the ingest again"
        )
    return digester.digest()


def _remote_call(remote: Remote, call: Callable[[], T]) -> T:
    """call(), its remote failures (and UriError) turned into one-line IngestErrors."""
    try:
        return call()
    except UriError as error:
        raise IngestError(str(error)) from None
    except Exception as error:
        if not is_remote_failure(error):
            raise
        raise IngestError(f"{remote.shown}: {failure(remote.scheme, error)}") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _require_space(source: RemoteInput, folder: Path) -> None:
    free = shutil.disk_usage(folder).free
    if source.size is not None and source.size > free:
        raise IngestError(
            f"{source.shown}: {source.size:,} bytes do not fit in {folder} ({free:,} bytes "
            "free), where the object is copied for the ingest: free space, or use a store on "
            "a larger disk"
        )


def _remove_stale(folder: Path) -> None:
    """Remove spool files a killed ingest left (nobody holds their flock)."""
    now = time.time()
    for path in folder.glob(f"{_PREFIX}*"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # gone meanwhile, or not a plain file: not ours to touch
        try:
            if now - os.fstat(fd).st_mtime < STALE_S:
                continue  # just made: its maker may not hold it yet
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live ingest's
        finally:
            os.close(fd)
        path.unlink(missing_ok=True)
