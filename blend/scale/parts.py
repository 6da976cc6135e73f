"""A run folder reached through pyarrow's filesystem layer (local path, shared FS or object store).

Invariant: a part is visible under its final name only once it is complete. On a local or
shared POSIX filesystem it is written under a hidden temporary name, fsynced and renamed (as
blend/store/results.py does); on an object store (s3://, gs://, abfs://) an object appears
whole when its upload completes, so it is written under its final name directly. Part names
carry the engine's tag (`part-<tag>-<index>-<uuid>.parquet`), so engines writing into the same
run folder never collide, and the results glob (`part-*.parquet`) sees every engine's parts.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from blend.store.results import ResultRow, ResultWriteError, result_table
from blend.store.uris import with_segments


def run_folder_uri(results_uri: str | None, results_dir: Path, run_directory: Path) -> str:
    """The run folder as engines reach it: `results_uri` stands for the store's results
    folder (e.g. s3://bucket/blend-results, a mount seen elsewhere); None: the local path."""
    if results_uri is None:
        return str(run_directory.resolve())
    relative = run_directory.resolve().relative_to(results_dir.resolve())
    if "://" not in results_uri:
        return f"{results_uri.rstrip('/')}/{relative.as_posix()}"
    return with_segments(results_uri, *relative.parts)  # before ?endpoint_override=...


@dataclass(slots=True)
class RunFolder:
    """One run's results folder, local or remote (`uri`: a path or a URL pyarrow knows)."""

    uri: str
    _fs: pafs.FileSystem | None = field(default=None, init=False, repr=False)
    _path: str = field(default="", init=False, repr=False)

    def __getstate__(self) -> dict[str, str]:  # filesystems are opened where they are used
        return {"uri": self.uri}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.uri, self._fs, self._path = state["uri"], None, ""

    @property
    def fs(self) -> pafs.FileSystem:
        if self._fs is None:
            if "://" in self.uri:
                self._fs, self._path = pafs.FileSystem.from_uri(self.uri)
            else:
                self._fs, self._path = pafs.LocalFileSystem(), self.uri
        return self._fs

    @property
    def path(self) -> str:
        _ = self.fs
        return self._path

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def write_part(
        self, tag: str, rows: Sequence[ResultRow], metadata: dict[str, str], index: int
    ) -> str:
        """Write rows as one complete part named after engine `tag`; returns its path."""
        fs, folder = self.fs, self.path
        name = f"part-{tag}-{index:05d}-{uuid.uuid4().hex[:8]}.parquet"
        final = f"{folder}/{name}"
        table = result_table(rows, metadata)
        try:
            fs.create_dir(folder, recursive=True)
            if not self.is_local:  # an object appears whole when its upload completes
                pq.write_table(table, final, filesystem=fs, compression="zstd")
                return final
            temporary = f"{folder}/.tmp-{tag}-{name}.partial"
            try:
                pq.write_table(table, temporary, filesystem=fs, compression="zstd")
                _fsync(temporary)
                fs.move(temporary, final)
            finally:
                Path(temporary).unlink(missing_ok=True)
            _fsync(folder)
        except OSError as exc:
            raise ResultWriteError(
                f"cannot write result part {final} ({exc}): fix the results folder, then "
                "resume the run; its finished parts are kept"
            ) from exc
        return final

    def part_paths(self) -> list[str]:
        """The complete parts in the folder (every engine's), sorted by name."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        names = [
            info.path
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
            and info.base_name.startswith("part-")
            and info.base_name.endswith(".parquet")
        ]
        return sorted(names)

    def done_request_ids(self) -> set[str]:
        """Request ids that have a row in a complete part."""
        done: set[str] = set()
        for part in self.part_paths():
            table = pq.read_table(part, columns=["request_id"], filesystem=self.fs)
            done.update(table.column(0).to_pylist())
        return done

    def rows_by_part(self, known: dict[str, int]) -> dict[str, int]:
        """Row counts of every complete part (footers read once: `known` is updated)."""
        for part in self.part_paths():
            if part not in known:
                with self.fs.open_input_file(part) as handle:
                    known[part] = pq.ParquetFile(handle).metadata.num_rows
        return known

    def remove_temporary(self, tag: str) -> int:
        """Delete what a killed engine `tag` left half-written (local folders only)."""
        if not self.is_local:
            return 0  # an unfinished upload never becomes an object
        stale = list(Path(self.path).glob(f".tmp-{tag}-*"))
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
