"""The input file itself, checked before anything else is done with it: check_input.

Every reason a file cannot be read at all is an IngestError whose message starts with the
path as given and says what to do, so that `blend ingest` and `blend run` can say it in one
line, before the store is touched or a model is built.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from blend.ingest.records import IngestError

# "s3://bucket/x.jsonl", "https://...": a URL scheme (two letters at least, so that a
# Windows drive "C:/" is not one). pathlib turns "s3://b" into "s3:/b": one slash suffices.
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):/")
# Leading bytes of compressed files: their lines would all be rejected as invalid UTF-8.
_COMPRESSED_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2"}
_PARQUET_SUFFIXES = (".parquet", ".pq")


def check_input(input_path: str | Path) -> Path:
    """The absolute path of an existing, readable, non-empty regular file, else IngestError
    (a URL, a missing file, a loop of symbolic links, a directory, no read permission, an
    empty or a compressed file)."""
    given = str(input_path)
    path = Path(input_path).expanduser()
    try:
        path.stat()  # follows links: tells a missing target or a loop from a file
    except OSError as error:
        raise IngestError(_unreachable(given, path, error)) from None
    path = path.resolve()
    if not path.is_file():
        raise IngestError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise IngestError(f"{path}: permission denied (not readable)")
    if path.stat().st_size == 0:
        raise IngestError(f"{path}: the file is empty (0 bytes)")
    _refuse_compressed(path)
    return path


def _unreachable(given: str, path: Path, error: OSError) -> str:
    """Why `path` cannot be opened, from the error its stat() raised."""
    url = _URL.match(given)
    if url is not None and isinstance(error, FileNotFoundError):
        scheme = url.group("scheme")
        return (
            f"{given}: {scheme}:// inputs are not supported yet; copy the file to this machine "
            "and give its local path"
        )
    if error.errno == errno.ELOOP:  # resolve() would loop too
        return (
            f"{path.absolute()}: a loop of symbolic links (the link leads back to itself); "
            "point it at the input file"
        )
    if path.is_symlink():
        return f"{path.absolute()}: a symbolic link to {os.readlink(path)}, which is missing"
    where = path.resolve()
    if isinstance(error, FileNotFoundError):
        return f"{where}: no such file"
    if isinstance(error, PermissionError):
        return f"{where}: permission denied (a folder on the way is not searchable)"
    return f"{where}: cannot read: {error.strerror or error}"


def _refuse_compressed(path: Path) -> None:
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        return  # Parquet compresses inside; its magic is PAR1
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as error:
        raise IngestError(f"{path}: cannot read: {error}") from None
    for magic, name in _COMPRESSED_MAGIC.items():
        if head.startswith(magic):
            raise IngestError(
                f"{path}: the file is {name}-compressed (starts with bytes {magic.hex(' ')}); "
                "decompress it first"
            )
