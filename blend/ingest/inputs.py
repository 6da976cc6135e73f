"""The input itself, checked before anything else is done with it: check_input.

A local path, or a URI (s3://, gs://, hf://, https://...: blend/ingest/remote.py; file://
is read as the local path). Every reason an input cannot be read at all is an IngestError
whose message starts with the path or URI as given (less credentials) and says what to do,
so that `blend ingest` and `blend run` can say it in one line, before the store is touched
or a model is built.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from blend.ingest.records import IngestError
from blend.ingest.remote import RemoteInput, open_remote
from blend.store.uris import base_name, shown_uri, uri_scheme

# A URI whose "//" became "/" (pathlib turns "s3://b" into "s3:/b"); two letters at least,
# so that a Windows drive "C:/" is not one.
_ONE_SLASH_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):/(?!/)")
# Leading bytes of compressed files: their lines would all be rejected as invalid UTF-8.
_COMPRESSED_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2"}
_PARQUET_SUFFIXES = (".parquet", ".pq")


def check_input(input_path: str | Path | RemoteInput) -> Path | RemoteInput:
    """The absolute path of an existing, readable, non-empty regular file, or the object a
    URI names (checked to exist, hold bytes and have a known format), else IngestError (a
    missing file or object, a loop of symbolic links, a directory, no read permission, an
    empty or a compressed file, an unknown scheme, a package to install, access denied)."""
    if isinstance(input_path, RemoteInput):
        return input_path
    given = str(input_path)
    scheme = uri_scheme(given) if isinstance(input_path, str) else None
    if scheme == "file":
        input_path = unquote(urlsplit(given).path)
    elif scheme is not None:
        return open_remote(given)
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
    url = _ONE_SLASH_URI.match(given)
    if url is not None and isinstance(error, FileNotFoundError):
        scheme = url.group("scheme")
        meant = shown_uri(f"{scheme}://{given[url.end() :]}")
        return (
            f"{shown_uri(given)}: no such file; a {scheme}:// URI needs two slashes "
            f"({meant}), and must be passed as text (pathlib.Path turns // into /)"
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


def input_stem(input_path: str | Path) -> str:
    """The default dataset name of an input: its file name without the suffix (for a URI,
    of the object's name, the query left out)."""
    given = str(input_path)
    if isinstance(input_path, str) and uri_scheme(given) is not None:
        return PurePosixPath(base_name(given)).stem
    return Path(input_path).stem
