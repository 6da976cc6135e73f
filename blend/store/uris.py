"""Files named by URI (s3://, gs://, hf://, https://...), reached through pyarrow's filesystems.

`open_uri` picks the filesystem: pyarrow's own where it has one (s3, gs/gcs, abfs, hdfs),
else an fsspec implementation wrapped in `pyarrow.fs.PyFileSystem(FSSpecHandler(...))`
(hf:// through huggingface_hub, http(s):// through aiohttp, az:// through adlfs...). Every
failure is a `UriError` of one line that names the URI as it may be shown (`shown_uri`:
without user:password@ and without query parameters that carry secrets) and says what to do:
an unknown scheme, a missing package (named for pip), access denied, an unreachable server.

S3-compatible servers (MinIO, Ceph, moto) are reached by setting AWS_ENDPOINT_URL (pyarrow
honours it, and it survives URIs built from a base URI), or by the URI's query
`?endpoint_override=HOST:PORT&scheme=http`; credentials come from AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), the region from AWS_DEFAULT_REGION.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs

# "s3://bucket/key": a scheme of two characters at least (a Windows drive "C:" is not one).
_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+)://")
# Query parameters whose names hold one of these carry a secret: never shown nor stored
# (pyarrow's access_key / secret_key / session_token, presigned URLs' X-Amz-Signature and
# X-Amz-Credential, Azure SAS `sig`, `token`s).
_SECRET_PARAMS = ("key", "secret", "token", "sig", "credential", "password", "passwd", "auth")
# Schemes pyarrow has no filesystem of its own for: straight to fsspec (pyarrow itself sends
# hf:// there, without naming a missing package).
_FSSPEC_ONLY = frozenset({"http", "https", "hf"})
# Where a scheme's credentials come from, for the access-denied line.
_CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS",
    "gcs": "GOOGLE_APPLICATION_CREDENTIALS",
    "hf": "HF_TOKEN (gated or private repositories)",
}
# Words of the errors pyarrow's S3 and GCS clients raise as OSError, by what they mean.
_DENIED_WORDS = (
    "ACCESS_DENIED",
    "INVALID_ACCESS_KEY_ID",
    "SIGNATURE_DOES_NOT_MATCH",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "AccessDenied",
    "Forbidden",
)
_NETWORK_WORDS = (
    "NETWORK_CONNECTION",
    "Could not resolve host",
    "Couldn't connect",
    "Cannot connect",
    "UNAVAILABLE",
)
# Roots of the modules whose exceptions report a remote failure (not a bug of blend's).
_REMOTE_MODULES = frozenset({"aiohttp", "fsspec", "huggingface_hub", "requests", "google"})
# Filesystems whose paths start with a bucket (a pyarrow build may lack either).
_BUCKETED = tuple(
    getattr(pafs, name) for name in ("S3FileSystem", "GcsFileSystem") if hasattr(pafs, name)
)


class UriError(ValueError):
    """A URI that cannot be opened or read; the message is one line that names it."""


@dataclass(frozen=True, slots=True)
class Remote:
    """A URI opened: its filesystem and the path inside it."""

    uri: str  # as given (may hold credentials: never shown)
    shown: str  # shown_uri(uri): for messages and lineage
    scheme: str  # lower case
    filesystem: pafs.FileSystem
    path: str


def uri_scheme(text: str) -> str | None:
    """The scheme of `text` in lower case when it is a URI ("scheme://..."), else None."""
    match = _URI.match(text)
    return match.group("scheme").lower() if match else None


def shown_uri(uri: str) -> str:
    """`uri` without user:password@ and without the query parameters that carry secrets."""
    parts = urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]
    kept = [  # as written: "endpoint_override=host:port" stays readable
        field
        for field in parts.query.split("&")
        if field
        and not any(word in unquote(field.partition("=")[0]).lower() for word in _SECRET_PARAMS)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(kept), ""))


def base_name(uri: str) -> str:
    """The last segment of the URI's path, decoded ("" for a bare bucket or host)."""
    return PurePosixPath(unquote(urlsplit(uri).path)).name


def with_segments(uri: str, *segments: str) -> str:
    """`uri` with path segments appended, its query (endpoint, region) kept at the end."""
    parts = urlsplit(uri)
    path = "/".join([parts.path.rstrip("/"), *segments])
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def open_uri(uri: str) -> Remote:
    """The filesystem that serves `uri` and the path in it; UriError when none can."""
    scheme = uri_scheme(uri)
    shown = shown_uri(uri)
    if scheme is None:
        raise UriError(f"{shown}: not a URI (expected scheme://...)")
    if scheme not in _FSSPEC_ONLY:
        try:
            filesystem, path = pafs.FileSystem.from_uri(uri)
        except pa.ArrowInvalid as error:
            if "Unrecognized filesystem type" not in str(error):
                raise UriError(f"{shown}: {first_line(error)}") from None
        except (OSError, pa.ArrowException) as error:
            raise UriError(f"{shown}: {failure(scheme, error)}") from None
        else:
            return Remote(uri, shown, scheme, filesystem, path)
    filesystem, path = _fsspec_filesystem(uri, scheme, shown)
    return Remote(uri, shown, scheme, filesystem, path)


def _fsspec_filesystem(uri: str, scheme: str, shown: str) -> tuple[pafs.FileSystem, str]:
    """fsspec's filesystem for `uri` as a pyarrow one; UriError naming what is missing."""
    try:
        import fsspec
    except ImportError:
        raise UriError(_missing_package(shown, scheme, "fsspec")) from None
    try:
        fsspec.get_filesystem_class(scheme)
    except ValueError:
        raise UriError(
            f"{shown}: unknown URI scheme {scheme}://; blend reads local paths, s3://, gs://, "
            "hf://, http(s):// and the schemes of installed fsspec filesystems"
        ) from None
    except ImportError as error:
        cause = error.__cause__
        module = cause.name if isinstance(cause, ImportError) and cause.name else None
        raise UriError(_missing_package(shown, scheme, module, str(error))) from None
    try:
        fs, path = fsspec.url_to_fs(uri)
    except Exception as error:  # each implementation raises its own kind
        if not is_remote_failure(error):
            raise
        raise UriError(f"{shown}: {failure(scheme, error)}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def _missing_package(shown: str, scheme: str, package: str | None, detail: str = "") -> str:
    if package is None:
        return f"{shown}: reading {scheme}:// needs a package that is not installed ({detail})"
    package = package.split(".")[0]
    return (
        f"{shown}: reading {scheme}:// needs the Python package {package}, which is not "
        f"installed: pip install {package}"
    )


def is_remote_failure(error: BaseException) -> bool:
    """True for what a filesystem raises when the remote side fails (denied, missing,
    unreachable), as opposed to a bug: OSError, Arrow's errors, the HTTP clients' own."""
    if isinstance(error, OSError | pa.ArrowException | TimeoutError):
        return True
    return type(error).__module__.split(".")[0] in _REMOTE_MODULES


def failure(scheme: str, error: BaseException, action: str = "read") -> str:
    """What a remote failure to `action` ("read", "write") means, in one line, with what to
    do where that is known."""
    text = first_line(error)
    status = getattr(error, "status", None) or getattr(
        getattr(error, "response", None), "status_code", None
    )
    if (
        isinstance(error, PermissionError)
        or status in (401, 403)
        or any(word in text for word in _DENIED_WORDS)
    ):
        source = _CREDENTIALS.get(scheme, "the credentials")
        return f"access denied: check {source} and that they may {action} it ({text})"
    if any(word in text for word in _NETWORK_WORDS):
        hint = "; for an S3-compatible server set AWS_ENDPOINT_URL" if scheme == "s3" else ""
        return f"cannot reach the server ({text}){hint}"
    return f"cannot {action}: {text}"


def first_line(error: BaseException) -> str:
    """The error's first non-blank line (pyarrow's errors can run to pages)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def file_info(remote: Remote) -> pafs.FileInfo:
    """The FileInfo of remote.path; UriError when it cannot be asked."""
    try:
        return remote.filesystem.get_file_info(remote.path)
    except Exception as error:
        if not is_remote_failure(error):
            raise
        raise UriError(f"{remote.shown}: {failure(remote.scheme, error)}") from None


def missing(remote: Remote) -> str:
    """Why a path that get_file_info calls NotFound is missing: its bucket, or itself, or
    (fsspec, which calls every failure of its HTTP client "not found") the server."""
    if isinstance(remote.filesystem, pafs.PyFileSystem):
        cause = _fsspec_not_found_cause(remote)
        if cause is not None and getattr(cause, "status", None) != 404:
            return f"{remote.shown}: {failure(remote.scheme, cause)}"
    if isinstance(remote.filesystem, _BUCKETED):
        bucket = remote.path.split("/", 1)[0]
        try:
            there = remote.filesystem.get_file_info(bucket).type != pafs.FileType.NotFound
        except (OSError, pa.ArrowException):
            there = True  # may not look at the bucket: say what is known
        if not there:
            return f"{remote.shown}: no such bucket {bucket!r}"
        return f"{remote.shown}: no such object in bucket {bucket!r}"
    return f"{remote.shown}: no such file"


def _fsspec_not_found_cause(remote: Remote) -> BaseException | None:
    """What fsspec's FileNotFoundError for remote.path stands for, when it says."""
    handler = remote.filesystem.handler
    if not isinstance(handler, pafs.FSSpecHandler):
        return None
    try:
        handler.fs.info(remote.path)
    except FileNotFoundError as error:
        cause = error.__cause__
        return cause if cause is not None and is_remote_failure(cause) else None
    except Exception:  # only asked to word the message; NotFound is said anyway
        return None
    return None
